"""The operator base class, its argument dataclasses, results as data and the post-application
checks."""

import pytest

from flowmend.engine import Applied, ArgsError, Invalid, NotApplicable, Patch, Reason, apply_patch
from flowmend.engine import default_library
from flowmend.engine._args import parse_args
from flowmend.engine._workflow import parse_workflow

SOURCE = """\
def solve(task):
    plan = llm(f"Plan: {task.prompt}")
    code = llm(f"Follow {plan}: {task.prompt}", temperature=0.2)
    return extract_code(code)
"""


@pytest.mark.parametrize(
    "data, message",
    [
        ({"max_attempts": 9}, "max_attempts must be between 2 and 5, got 9"),
        ({"max_attempts": 1}, "max_attempts must be between 2 and 5, got 1"),
        ({"max_attempts": "3"}, "max_attempts must be an integer"),
        ({"max_attempts": True}, "max_attempts must be an integer"),
        ({"until": "forever"}, "until must be one of"),
        ({"tries": 3}, "unknown argument(s) tries (expected: max_attempts, until)"),
        ([3], "arguments must be an object"),
    ],
)
def test_bad_arguments_say_what_is_wrong(data, message):
    cls = default_library().get("wrap-in-retry")
    with pytest.raises(ArgsError) as err:
        parse_args(cls.Args, data)
    assert message in str(err.value)


def test_arguments_from_json_equal_the_dataclass():
    cls = default_library().get("set-call-params")
    assert parse_args(cls.Args, {"temperature": 1}) == cls.Args(temperature=1.0)
    with pytest.raises(ArgsError, match="set at least one"):
        parse_args(cls.Args, {})
    with pytest.raises(ArgsError, match="missing argument"):
        parse_args(default_library().get("swap-model").Args, {})
    with pytest.raises(ArgsError, match="one line"):
        parse_args(default_library().get("append-instruction").Args, {"sentence": "a\nb"})


def test_apply_returns_data_for_every_failure():
    wf = parse_workflow(SOURCE)
    op = default_library().get("wrap-in-retry")()
    assert isinstance(op.apply(wf, {"step": "code"}, {"max_attempts": 3}), Applied)
    bad = op.apply(wf, {"step": "code"}, {"max_attempts": 7})
    assert isinstance(bad, Invalid) and bad.reason is Reason.BAD_ARGS
    unknown = op.apply(wf, {"step": "nope"}, {})
    assert isinstance(unknown, NotApplicable) and unknown.reason is Reason.UNKNOWN_STEP
    assert "plan, code" in unknown.detail
    assert op.apply(wf, "code", {}).reason is Reason.BAD_TARGET
    missing = apply_patch(wf, Patch("no-such-operator", {"step": "code"}, {}))
    assert isinstance(missing, Invalid) and missing.reason is Reason.UNKNOWN_OPERATOR


def test_a_crashing_operator_is_an_internal_result_not_an_exception():
    class Crashing(default_library().get("swap-model")):
        def transform(self, wf, target, args):
            raise ZeroDivisionError("boom")

    result = Crashing().apply(parse_workflow(SOURCE), {"step": "code"}, {"model": "m"})
    assert isinstance(result, Invalid) and result.reason is Reason.INTERNAL
    assert "ZeroDivisionError: boom" in result.detail


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda s: s.replace("def solve(task):", "def solve(task, extra):"), Reason.SIGNATURE),
        (lambda s: s.replace("return extract_code(code)", "return extract_code(code) + helper"),
         Reason.FREE_VARIABLE),
        (lambda s: s.replace("return extract_code(code)", "return extract_code(code"), Reason.PARSE),
        (lambda s: s.replace("def solve(task):", "def solve(task):\n    await code"), Reason.COMPILE),
    ],
)
def test_post_application_checks(edit, reason):
    import libcst as cst

    class Editing(default_library().get("swap-model")):
        def transform(self, wf, target, args):
            return edit(wf.source)

    result = Editing().apply(parse_workflow(SOURCE), {"step": "code"}, {"model": "m"})
    assert isinstance(result, Invalid), result
    assert result.reason is reason
    assert cst  # the checks parse with libcst


def test_runtime_names_are_not_free_variables():
    wf = parse_workflow(SOURCE)
    result = apply_patch(wf, Patch("insert-verify-step", {"step": "code"}, {}))
    assert isinstance(result, Applied)
    assert "verify(code)" in result.source


def test_applied_diff_is_unified():
    wf = parse_workflow(SOURCE, path="flows/solve.py")
    result = apply_patch(wf, Patch("swap-model", {"step": "plan"}, {"model": "gemma3-270m"}))
    assert result.diff.startswith("--- a/flows/solve.py\n+++ b/flows/solve.py\n")
    assert '+    plan = llm(f"Plan: {task.prompt}", model="gemma3-270m")' in result.diff


@pytest.mark.parametrize("footer", ["\n \n", "\n\n # done", "\n \n  # c\n"])
def test_a_file_libcst_does_not_reproduce_is_refused(footer):
    from flowmend.engine._workflow import WorkflowError

    # libcst 1.9 drops these blank lines: editing such a file would rewrite bytes far from
    # the edit, so the workflow model refuses it before any operator sees it.
    with pytest.raises(WorkflowError, match="byte-identical"):
        parse_workflow(SOURCE + footer)


def test_an_application_carries_the_new_workflow_and_the_library_digest():
    wf = parse_workflow(SOURCE)
    result = apply_patch(wf, Patch("wrap-in-retry", {"step": "code"}, {"max_attempts": 2}))
    assert isinstance(result, Applied)
    assert result.library_digest == default_library().digest
    new = result.workflow
    assert new.source == result.source and new.module.code == result.source
    assert new.to_json() == parse_workflow(result.source).to_json()
    assert (new.entry, new.step_callees) == (wf.entry, wf.step_callees)
    # Applied to the child, a second patch sees the first one's edit without a re-parse.
    again = apply_patch(new, Patch("swap-model", {"step": "plan"}, {"model": "m"}))
    assert "range(2)" in again.source and 'model="m"' in again.source
