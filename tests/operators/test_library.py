"""The built-in operator library: the eleven, the drift check, and what an operator must be."""

import dataclasses
import json
import types

import pytest

import flowmend.operators
from flowmend.engine import Case, LibraryError, Operator, default_library, load_library
from flowmend.engine._library import drift, operators_in, validate_operator

ELEVEN = {
    "rewrite-prompt-literal", "append-instruction", "set-call-params", "insert-verify-step",
    "wrap-in-retry", "add-step", "remove-step", "reorder-steps", "branch-on-check",
    "sample-and-select", "swap-model",
}


def test_the_eleven_are_the_builtin_library_and_exported():
    library = default_library()
    assert set(library.names()) == ELEVEN
    exported = {
        getattr(flowmend.operators, n).name for n in flowmend.operators.__all__
        if isinstance(getattr(flowmend.operators, n), type)
        and issubclass(getattr(flowmend.operators, n), Operator)
    }
    assert exported == ELEVEN
    assert drift(flowmend.operators, library.operators()) == []
    assert load_library(["builtins"]).digest == library.digest


def test_drift_check_reports_both_directions():
    fake = types.ModuleType("flowmend.operators")
    fake.__all__ = ["RemoveStep"]
    fake.RemoveStep = flowmend.operators.RemoveStep
    problems = drift(fake, default_library().operators())
    assert len(problems) == 1 and "defined but not in __all__" in problems[0]
    assert "swap-model" in problems[0]
    assert drift(fake, []) == ["in __all__ but not defined: remove-step"]


def test_each_builtin_module_defines_exactly_its_operator():
    import flowmend.operators.wrap_in_retry as module

    assert operators_in(module) == [flowmend.operators.WrapInRetry]


def test_validation_refuses_an_incomplete_operator():
    class Broken(Operator):
        name = "Broken Name"
        kind = "other"
        DESCRIPTION = "two\nlines"

    problems = "; ".join(validate_operator(Broken))
    for fragment in ("kebab-case", "kind", "one line", "example"):
        assert fragment in problems
    with pytest.raises(LibraryError, match="kebab-case"):
        default_library().with_operators(Broken)


def test_validation_refuses_an_undocumented_argument():
    @dataclasses.dataclass(frozen=True)
    class Args:
        count: int = 1

    class Undocumented(Operator):
        name = "undocumented"
        kind = "prompt"
        DESCRIPTION = "x"
        EXAMPLES = [Case("def solve(task):\n    return llm(task)\n")]

    Undocumented.Args = Args
    assert validate_operator(Undocumented) == ["Args field(s) without a docstring line: count"]


def test_validation_refuses_a_text_arg_that_is_no_argument():
    class Wrong(flowmend.operators.SwapModel):
        name = "wrong-text"
        TEXT_ARG = "text"

    assert validate_operator(Wrong) == ["TEXT_ARG 'text' is not an argument"]
    assert flowmend.operators.RewritePromptLiteral.TEXT_ARG == "text"


@pytest.mark.parametrize("cls", default_library().operators(), ids=lambda c: c.name)
def test_schema_describes_every_field(cls):
    schema = cls.args_schema()
    json.dumps(schema)  # plain JSON
    fields = {f.name for f in dataclasses.fields(cls.Args)}
    assert set(schema["properties"]) == fields
    assert schema["additionalProperties"] is False
    for prop in schema["properties"].values():
        assert prop["description"]


def test_schema_carries_bounds_and_choices():
    props = default_library().get("wrap-in-retry").args_schema()["properties"]
    assert props["max_attempts"] == {
        "type": "integer", "minimum": 2, "maximum": 5, "default": 3,
        "description": "How many times the step may run at most (2 to 5).",
    }
    assert props["until"]["enum"] == ["no-exception", "extracts", "compiles", "verify"]
    temperature = default_library().get("set-call-params").args_schema()["properties"]["temperature"]
    assert temperature["type"] == ["number", "null"] and temperature["maximum"] == 2.0
