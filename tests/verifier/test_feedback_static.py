"""The parts of feedback that run no code: extraction verdicts, syntax errors, signatures, cost, JSON."""

import json

import pytest

from flowmend.task import Task
from flowmend.verifier import CheckOutcome, Cost, Feedback, SyntaxProblem, feedback, instrument_check, score
from flowmend.verifier._feedback import _function, _parse, _program, _violations

PROMPT = 'from typing import List\n\n\ndef add(xs: List[int], k: int = 0) -> int:\n    """Sum plus k.\n    >>> add([1, 2])\n    3\n    """\n'
TASK = Task("Toy/0", PROMPT, "add")
SIGNATURE = _function(_parse(PROMPT), "add")


def test_output_without_code_is_no_code_and_never_reaches_the_sandbox():
    fb = feedback(TASK, "I would loop over the list and add.", {"calls": 1, "tokens": 40}, sandbox=None)
    assert fb.kind == "no_code" and not fb.compiled
    assert fb.violations == ("the output contains no Python code",)
    assert fb.cost == Cost(calls=1, prompt_tokens=40, units=40.0)
    assert fb.summary() == "no Python code found in the output"
    assert fb.to_check().kind == "no_code" and not fb.to_check()
    assert feedback(TASK, "", None, sandbox=None).violations == ("the output is empty",)


def test_a_syntax_error_is_reported_with_its_line():
    output = "```python\ndef add(xs, k=0):\n    total = 0\n    for x in xs\n        total += x\n    return total + k\n```"
    fb = feedback(TASK, output, None, sandbox=None)
    assert fb.kind == "syntax_error"
    assert fb.syntax_error.line == 3 and "for x in xs" in fb.syntax_error.text
    assert fb.summary().splitlines() == [f"syntax error at line 3: {fb.syntax_error.message}", "  3 | for x in xs"]
    assert score(fb) == pytest.approx(-1.0)


def test_unfenced_broken_code_is_a_syntax_error_not_no_code():
    fb = feedback(TASK, "Here you go:\ndef add(xs, k=0):\n    return (sum(xs) + k\n", None, sandbox=None)
    assert fb.kind == "syntax_error"


def test_a_body_completion_is_joined_to_the_prompt():
    code, tree, assembled = _program(TASK, "    return sum(xs) + k\n", SIGNATURE)
    assert assembled and code == PROMPT.strip() + "\n    return sum(xs) + k"
    assert tree is not None
    # Prose is no body: the prompt's bare stub is not taken for a program.
    assert _program(TASK, "  I am not sure.", SIGNATURE)[::2] == ("", False)


@pytest.mark.parametrize(
    "body",
    [
        "    return sum(range(1, 11111111111111111111",  # cut off at max_tokens
        '    """ Sum plus k.\n    >>> add([1, 2])\n',  # the docstring echoed, never closed
        "    total = (\n",
    ],
)
def test_a_broken_body_completion_is_a_syntax_error_in_the_assembled_program(body):
    fb = feedback(TASK, body, None, sandbox=None)
    assert fb.kind == "syntax_error" and fb.assembled
    assert fb.code.startswith(PROMPT.strip()) and fb.syntax_error.line > PROMPT.count("\n")


@pytest.mark.parametrize(
    "code, expected",
    [
        ("def add(xs, k=0):\n    return 0", ()),
        ("def add(xs, k=0, *, scale=1):\n    return 0", ()),
        ("def add(*args):\n    return 0", ()),
        ("from operator import add", ()),
        ("add = lambda xs, k=0: 0", ()),
        ("if True:\n    def add(xs, k=0):\n        return 0", ()),
        ("def total(xs):\n    return 0", ("the entry point `add` is not defined",)),
        ("class C:\n    def add(self, xs, k=0):\n        return 0", ("the entry point `add` is not defined",)),
        (
            "def add(xs):\n    return 0",
            ("`add` takes 1 positional argument(s) but the prompt's `def add(xs: List[int], k: int=0)` takes 1 to 2",),
        ),
        (
            "def add(xs, k, j):\n    return 0",
            ("`add` takes 3 positional argument(s) but the prompt's `def add(xs: List[int], k: int=0)` takes 1 to 2",),
        ),
        (
            "def add(xs, k=0, *, scale):\n    return 0",
            ("`add` requires keyword-only argument(s) scale the prompt does not have",),
        ),
    ],
)
def test_entry_point_and_signature_constraints(code, expected):
    assert _violations("add", _parse(code), SIGNATURE) == expected


def test_without_a_def_in_the_prompt_only_the_name_is_checked():
    assert _violations("similar_elements", _parse("def similar_elements(a):\n    return a"), None) == ()


@pytest.mark.parametrize(
    "check, expected",
    [
        ("assert add([1]) == 1", "assert (_flowmend_got := add([1])) == 1, 'got ' + repr(_flowmend_got)[:200]"),
        ("assert add([]) is None", "assert (_flowmend_got := add([])) is None, 'got ' + repr(_flowmend_got)[:200]"),
        (
            "assert abs(add([0.5]) - 0.5) < 1e-06",
            "assert abs((_flowmend_got := add([0.5])) - 0.5) < 1e-06, 'got ' + repr(_flowmend_got)[:200]",
        ),
        ("assert add([1]) == 1, 'custom'", "assert add([1]) == 1, 'custom'"),
        ("assert 1 < add([1]) < 3", "assert 1 < add([1]) < 3"),
        ("assert other(1) == 1", "assert other(1) == 1"),
        ("x = add([1])\nassert x == 1", "x = add([1])\nassert x == 1"),
        ("assert add(", "assert add("),
    ],
)
def test_instrumented_checks_report_what_they_got(check, expected):
    assert instrument_check(check, "add") == expected


def test_instrumented_checks_keep_their_meaning():
    namespace = {"add": lambda xs, k=0: sum(xs) + k}
    exec(instrument_check("assert add([1, 2]) == 3", "add"), dict(namespace))
    with pytest.raises(AssertionError, match=r"^got 4$"):
        exec(instrument_check("assert add([1, 2], 1) == 3", "add"), dict(namespace))


@pytest.mark.parametrize(
    "trace, expected",
    [
        (None, Cost()),
        ({"calls": 2, "prompt_tokens": 10, "completion_tokens": 5, "cost": 0.5, "wall_s": 1.5}, Cost(2, 10, 5, 0.5, 1.5)),
        ({"llm_calls": 1, "tokens": 30}, Cost(1, 30, 0, 30.0)),
        (
            [
                {"kind": "llm", "prompt_tokens": 10, "completion_tokens": 5, "cost": 15.0},
                {"kind": "verify", "passed": False},
                {"prompt_tokens": 1, "completion_tokens": 1},
            ],
            Cost(2, 11, 6, 17.0),
        ),
    ],
)
def test_cost_from_a_trace(trace, expected):
    assert Cost.from_trace(trace) == expected


def test_feedback_round_trips_through_json_without_a_score():
    fb = Feedback(
        task_id="Toy/0",
        code="def add(xs, k=0):\n    return 1",
        compiled=True,
        checks=(CheckOutcome("assert add([1, 2]) == 3", "failed", "AssertionError", "got 1"), CheckOutcome("assert add([]) == 0", "error", "TypeError", "boom")),
        self_checks=(CheckOutcome("assert add([1]) == 1", "passed"),),
        runtime_error="TypeError",
        runtime_message="boom",
        cost=Cost(1, 10, 5, 15.0),
        syntax_error=None,
    )
    data = json.loads(fb.dumps())
    assert "score" not in data
    # Records written before the score left Feedback still read.
    assert Feedback.from_json({**data, "score": 0.25}) == fb
    assert data["schema"] == "flowmend.feedback/1" and data["kind"] == "runtime_error"
    assert Feedback.from_json(data) == fb
    assert Feedback.from_json(json.loads(Feedback("t", "x = (", False, SyntaxProblem("bad", 1, 5, "x = (")).dumps())).syntax_error.line == 1
    summary = fb.summary()
    assert summary.splitlines() == [
        "0/2 visible checks passed",
        "FAILED assert add([1, 2]) == 3 -- got 1",
        "ERROR assert add([]) == 0 -- TypeError: boom",
        "1/1 self-checks passed",
    ]
    short = fb.summary(max_chars=40)
    assert len(short) <= 40 and short.endswith("...")
