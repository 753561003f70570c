"""extract_code on the kinds of answers weak models give, and the Check a workflow's verify() returns."""

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmend.verifier import runtime_helpers
from flowmend.verifier.runtime_helpers import CHECK_KINDS, Check, extract_code

CHATTY = '''Sure! Here is a Python function that solves the problem:

```python
def add(a, b):
    """Add two numbers."""
    return a + b
```

This function takes two numbers and returns their sum. You can call it like this:

```python
print(add(1, 2))  # 3
```
'''

USAGE_FIRST = '''First, an example of how it is used:

```python
result = incr_list([1, 2, 3])
```

And the implementation:

```python
def incr_list(l):
    return [x + 1 for x in l]
```
'''

TRUNCATED_AT_MAX_TOKENS = '''```python
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def main():
    for i in range(10):
        print(fib(i'''

NO_FENCE_WITH_PROSE = '''Here is the solution.
from typing import List

def below_zero(operations: List[int]) -> bool:
    balance = 0
    for op in operations:
        balance += op
        if balance < 0:
            return True
    return False

The function keeps a running balance and returns True as soon as it drops below zero.
'''


@pytest.mark.parametrize(
    "text, entry_point, expected",
    [
        pytest.param(CHATTY, "add", 'def add(a, b):\n    """Add two numbers."""\n    return a + b', id="chatty"),
        pytest.param(CHATTY, None, 'def add(a, b):\n    """Add two numbers."""\n    return a + b', id="chatty-no-entry"),
        pytest.param(USAGE_FIRST, "incr_list", "def incr_list(l):\n    return [x + 1 for x in l]", id="usage-first"),
        pytest.param(USAGE_FIRST, None, "def incr_list(l):\n    return [x + 1 for x in l]", id="usage-first-any-def"),
        pytest.param("```Python\ndef f():\n    return 1\n```", "f", "def f():\n    return 1", id="capital-tag"),
        pytest.param("~~~py\nx = 1\n~~~", None, "x = 1", id="tilde-fence"),
        pytest.param("def f(x):\n    return x * 2\n", "f", "def f(x):\n    return x * 2", id="bare-code"),
        pytest.param(NO_FENCE_WITH_PROSE, "below_zero", NO_FENCE_WITH_PROSE.split("\n", 1)[1].split("\n\nThe function")[0], id="prose-around"),
        pytest.param(
            "1. Define it:\n\n    def g(s):\n        return s[::-1]\n\nDone.", "g", "def g(s):\n    return s[::-1]", id="indented",
        ),
        pytest.param('```python\ndef f():\n\treturn "a\tb"\n```', "f", 'def f():\n\treturn "a\tb"', id="tabs-kept"),
        pytest.param("I am not sure how to solve this problem.", "f", "", id="prose-only"),
        pytest.param("f", "f", "", id="one-word"),
        pytest.param("", "f", "", id="empty"),
        pytest.param("```bash\npip install numpy\n```", None, "", id="shell-block-only"),
        pytest.param(
            "```python\ndef f(x):\n    return x\n```<|im_end|>", "f", "def f(x):\n    return x", id="end-token-after-fence"
        ),
    ],
)
def test_extract_code_on_weak_model_answers(text, entry_point, expected):
    assert extract_code(text, entry_point) == expected


def test_an_unclosed_fence_runs_to_the_end_and_keeps_its_syntax_error():
    code = extract_code(TRUNCATED_AT_MAX_TOKENS, "fib")
    assert code.startswith("def fib(n):")
    assert code.endswith("print(fib(i")  # returned as written: the verifier reports the error line
    with pytest.raises(SyntaxError):
        ast.parse(code)


def test_a_block_with_a_syntax_error_is_still_preferred_when_it_defines_the_entry_point():
    text = "```python\nhelper = 1\n```\n```python\ndef f(x)\n    return x\n```"
    assert extract_code(text, "f") == "def f(x)\n    return x"


def test_extract_code_rejects_non_text():
    with pytest.raises(TypeError):
        extract_code(None)  # type: ignore[arg-type]


def test_check_reads_as_a_verdict():
    ok = Check(True, "ok", "")
    bad = Check(False, "failing_check", "1/2 visible checks passed\nFAILED assert f(1) == 2 -- got 3")
    assert ok and not bad
    assert str(ok) == "all visible checks passed"
    assert "FAILED assert f(1) == 2" in str(bad)
    assert str(Check(False, "syntax_error")) == "syntax error"
    assert Check.from_json(bad.to_json()) == bad
    assert len({ok, Check(True, "ok", "")}) == 1
    with pytest.raises(AttributeError):
        ok.passed = False
    with pytest.raises(ValueError, match="unknown check kind"):
        Check(False, "crashed", "")
    assert set(CHECK_KINDS) == {"ok", "syntax_error", "runtime_error", "failing_check", "no_code"}


def test_runtime_helpers_import_only_the_standard_library():
    source = Path(runtime_helpers.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in a module loaded as source"
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_runtime_helpers_load_as_source_in_a_bare_interpreter(tmp_path):
    """What the sandbox harness does: exec the file's text with flowmend not importable."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path = [p for p in sys.path if "site-packages" not in p and p not in ("", ".")]
        namespace = {{"__name__": "flowmend_runtime"}}
        exec(compile(open({runtime_helpers.__file__!r}).read(), "runtime_helpers.py", "exec"), namespace)
        print(namespace["extract_code"]("```python\\ndef f():\\n    return 1\\n```", "f"))
        print(namespace["Check"](False, "no_code", "no code"))
        try:
            import flowmend
        except ImportError:
            print("isolated")
        """
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["def f():", "    return 1", "no code", "isolated"]


RECORDED = json.loads((Path(__file__).parent / "data" / "smollm2_humaneval.json").read_text())["outputs"]


@pytest.mark.parametrize("record", RECORDED, ids=[r["task_id"] for r in RECORDED])
def test_extract_code_on_recorded_smollm2_answers(record):
    """Real answers of the embedded model: code when there is some, "" for prose in a fence."""
    code = extract_code(record["text"], record["entry_point"])
    if record["kind"] == "no_code":
        assert code == ""
        return
    assert code.startswith(f"def {record['entry_point']}(") or code.startswith(("from ", "import "))
    assert "```" not in code
    parses = True
    try:
        ast.parse(code)
    except SyntaxError:
        parses = False
    assert parses == (record["kind"] != "syntax_error")


def test_an_empty_fence_before_the_python_block_is_skipped():
    text = "```\n\n```python\ndef f(x):\n    return x\n```\n\nThis function returns `x`."
    assert extract_code(text, "f") == "def f(x):\n    return x"


def test_prose_inside_an_untagged_fence_is_not_code():
    text = "```\n\nThe function `f` uses a loop to add the numbers.\n"
    assert extract_code(text, "f") == ""


PROGRAMS = [
    "def f(x):\n    return x + 1",
    "import math\n\n\ndef area(r):\n    return math.pi * r ** 2",
    "class Stack:\n    def __init__(self):\n        self.items = []",
    "@staticmethod\ndef g():\n    pass",
]
prose = st.text(st.characters(blacklist_characters="`~\r", blacklist_categories=("Cs",)), max_size=80)


@given(st.text(max_size=300))
def test_extract_code_never_raises_and_returns_code_or_nothing(text):
    code = extract_code(text)
    assert code == "" or code == code.strip("\n")


@given(prose, st.sampled_from(PROGRAMS), prose, st.sampled_from(["python", "py", "", "Python3"]))
def test_a_fenced_program_is_found_whatever_prose_surrounds_it(before, program, after, lang):
    text = f"{before}\n```{lang}\n{program}\n```\n{after}"
    assert extract_code(text) == program
