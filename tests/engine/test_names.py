"""The bytecode free-name check agrees with libcst's scope analysis, at a fraction of the cost."""

from __future__ import annotations

import ast
import dis
import types
import unicodedata
import warnings
from pathlib import Path

import hypothesmith
import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings

from libcst.metadata import MetadataWrapper, ScopeProvider

from flowmend.engine._names import free_names

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


def scope_free_names(module: cst.Module) -> set[str]:
    """The oracle: names libcst's scope analysis finds no binding for."""
    scopes = MetadataWrapper(module, unsafe_skip_copy=True).resolve(ScopeProvider)
    names: set[str] = set()
    for scope in {s for s in scopes.values() if s is not None}:
        for access in scope.accesses:
            if not access.referents:
                node = access.node
                names.add(node.value if isinstance(node, cst.Name) else str(getattr(node, "value", "")))
    names.discard("")
    return names


def _has_dead_code(code) -> bool:
    """Whether the compiler dropped code as unreachable: a name in `co_names` that no
    instruction uses (the check does not count reads there, the scope analysis does)."""
    used = {i.argval for i in dis.get_instructions(code) if isinstance(i.argval, str)}
    if set(code.co_names) - used:
        return True
    return any(_has_dead_code(c) for c in code.co_consts if isinstance(c, types.CodeType))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_examples_read_exactly_the_runtime_names(path):
    source = path.read_text()
    assert free_names(source) == scope_free_names(cst.parse_module(source))
    assert free_names(source) <= {"llm", "verify", "extract_code"}


@pytest.mark.parametrize("source,free", [
    ("x = y\n", {"y"}),
    ("def f():\n    global g\n    g = 1\n    return h\n", {"h"}),
    ("class C:\n    a = b\n    def m(self):\n        return a\n", {"a", "b"}),
    ("def f(x):\n    def g():\n        return x + z\n    return g\n", {"z"}),
    ("[i for i in range(3) if j]\n", {"j"}),
    ("try:\n    pass\nexcept E as e:\n    print(e)\n", {"E"}),
    ("lambda q: q + r\n", {"r"}),
    ("(w := 3)\nprint(w)\n", set()),
    ("match v:\n    case [a, *b]:\n        print(a, b, c)\n", {"v", "c"}),
])
def test_free_names(source, free):
    assert free_names(source) == free


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(hypothesmith.from_grammar())
def test_agrees_with_the_scope_analysis_on_generated_programs(source):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(source)
        module = cst.parse_module(source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            code = compile(source, "<generated>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, cst.ParserSyntaxError, RecursionError):
        return  # the check reads compiled code: a program that does not compile has none
    if _has_dead_code(code):
        return
    # The two analyses differ, by design, on match captures and `del`: skip those programs.
    if any(isinstance(n, (ast.Match, ast.Delete)) for n in ast.walk(tree)):
        return
    # CPython normalises identifiers (NFKC); libcst keeps them as written.
    assert free_names(code) == {unicodedata.normalize("NFKC", n) for n in scope_free_names(module)}


def test_unreachable_reads_are_not_reads():
    assert free_names("def f():\n    return 1\n    zz\nif False:\n    yy\n") == set()
