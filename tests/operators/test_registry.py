"""The registry, the argument dataclasses and their JSON schemas, and results-as-data."""

import dataclasses
import json
import types

import pytest

import flowmend.operators
from flowmend.engine import _operator as registry
from flowmend.engine._operator import (
    Applied, ArgsError, Invalid, NotApplicable, Reason, RegistryError, parse_args,
)
from flowmend.engine._workflow import parse_workflow

ELEVEN = {
    "rewrite-prompt-literal", "append-instruction", "set-call-params", "insert-verify-step",
    "wrap-in-retry", "add-step", "remove-step", "reorder-steps", "branch-on-check",
    "sample-and-select", "swap-model",
}

SOURCE = """\
def solve(task):
    plan = llm(f"Plan: {task.prompt}")
    code = llm(f"Follow {plan}: {task.prompt}", temperature=0.2)
    return extract_code(code)
"""


def test_the_eleven_are_registered_and_exported():
    assert ELEVEN <= set(registry.names())
    exported = {getattr(flowmend.operators, n).name for n in flowmend.operators.__all__}
    assert exported == set(registry.names())
    assert registry.drift(flowmend.operators) == []


def test_drift_check_reports_both_directions():
    registry.load_builtins()
    fake = types.ModuleType("flowmend.operators")
    fake.__all__ = ["RemoveStep"]
    fake.RemoveStep = flowmend.operators.RemoveStep
    problems = registry.drift(fake)
    assert len(problems) == 1 and "registered but not in __all__" in problems[0]
    assert "swap-model" in problems[0]


def test_register_refuses_an_incomplete_operator():
    class Broken(registry.Operator):
        name = "Broken Name"
        kind = "other"
        DESCRIPTION = "two\nlines"

    with pytest.raises(RegistryError) as err:
        registry.register(Broken)
    for fragment in ("kebab-case", "kind", "one line", "example"):
        assert fragment in str(err.value)
    assert "Broken Name" not in registry.names()


def test_register_refuses_an_undocumented_argument():
    @dataclasses.dataclass(frozen=True)
    class Args:
        count: int = 1

    class Undocumented(registry.Operator):
        name = "undocumented"
        kind = "prompt"
        DESCRIPTION = "x"
        EXAMPLES = [registry.Case("def solve(task):\n    return llm(task)\n")]

    Undocumented.Args = Args
    with pytest.raises(RegistryError, match="without a docstring line: count"):
        registry.register(Undocumented)


@pytest.mark.parametrize("cls", registry.all_operators(), ids=lambda c: c.name)
def test_schema_describes_every_field(cls):
    schema = cls.args_schema()
    json.dumps(schema)  # plain JSON
    fields = {f.name for f in dataclasses.fields(cls.Args)}
    assert set(schema["properties"]) == fields
    assert schema["additionalProperties"] is False
    for prop in schema["properties"].values():
        assert prop["description"]


def test_schema_carries_bounds_and_choices():
    props = registry.get("wrap-in-retry").args_schema()["properties"]
    assert props["max_attempts"] == {
        "type": "integer", "minimum": 2, "maximum": 5, "default": 3,
        "description": "How many times the step may run at most (2 to 5).",
    }
    assert props["until"]["enum"] == ["no-exception", "extracts", "compiles", "verify"]
    temperature = registry.get("set-call-params").args_schema()["properties"]["temperature"]
    assert temperature["type"] == ["number", "null"] and temperature["maximum"] == 2.0


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
    cls = registry.get("wrap-in-retry")
    with pytest.raises(ArgsError) as err:
        parse_args(cls.Args, data)
    assert message in str(err.value)


def test_arguments_from_json_equal_the_dataclass():
    cls = registry.get("set-call-params")
    assert parse_args(cls.Args, {"temperature": 1}) == cls.Args(temperature=1.0)
    with pytest.raises(ArgsError, match="set at least one"):
        parse_args(cls.Args, {})
    with pytest.raises(ArgsError, match="missing argument"):
        parse_args(registry.get("swap-model").Args, {})
    with pytest.raises(ArgsError, match="one line"):
        parse_args(registry.get("append-instruction").Args, {"sentence": "a\nb"})


def test_apply_returns_data_for_every_failure():
    wf = parse_workflow(SOURCE)
    op = registry.get("wrap-in-retry")()
    assert isinstance(op.apply(wf, {"step": "code"}, {"max_attempts": 3}), Applied)
    bad = op.apply(wf, {"step": "code"}, {"max_attempts": 7})
    assert isinstance(bad, Invalid) and bad.reason is Reason.BAD_ARGS
    unknown = op.apply(wf, {"step": "nope"}, {})
    assert isinstance(unknown, NotApplicable) and unknown.reason is Reason.UNKNOWN_STEP
    assert "plan, code" in unknown.detail
    assert op.apply(wf, "code", {}).reason is Reason.BAD_TARGET
    missing = registry.apply(wf, "no-such-operator", {"step": "code"}, {})
    assert isinstance(missing, Invalid) and missing.reason is Reason.UNKNOWN_OPERATOR


def test_a_crashing_operator_is_an_internal_result_not_an_exception():
    class Crashing(registry.get("swap-model")):
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

    class Editing(registry.get("swap-model")):
        def transform(self, wf, target, args):
            return edit(wf.source)

    result = Editing().apply(parse_workflow(SOURCE), {"step": "code"}, {"model": "m"})
    assert isinstance(result, Invalid), result
    assert result.reason is reason
    assert cst  # the checks parse with libcst


def test_runtime_names_are_not_free_variables():
    wf = parse_workflow(SOURCE)
    result = registry.apply(wf, "insert-verify-step", {"step": "code"}, {})
    assert isinstance(result, Applied)
    assert "verify(code)" in result.source


def test_applied_diff_is_unified():
    wf = parse_workflow(SOURCE, path="flows/solve.py")
    result = registry.apply(wf, "swap-model", {"step": "plan"}, {"model": "gemma3-270m"})
    assert result.diff.startswith("--- a/flows/solve.py\n+++ b/flows/solve.py\n")
    assert '+    plan = llm(f"Plan: {task.prompt}", model="gemma3-270m")' in result.diff


@pytest.mark.parametrize("footer", ["\n \n", "\n\n # done", "\n \n  # c\n"])
def test_a_file_libcst_does_not_reproduce_is_refused(footer):
    from flowmend.engine._workflow import WorkflowError

    # libcst 1.9 drops these blank lines: editing such a file would rewrite bytes far from
    # the edit, so the workflow model refuses it before any operator sees it.
    with pytest.raises(WorkflowError, match="byte-identical"):
        parse_workflow(SOURCE + footer)
