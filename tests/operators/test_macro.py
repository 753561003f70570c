"""Macro-operators as data (`flowmend.macro/1`): loaded like any operator, held to the same
gate (examples and fuzz properties), and refused in one line when malformed."""

from __future__ import annotations

import json
import textwrap

import pytest

from flowmend.engine import Applied, LibraryError, load_library, parse_workflow
from flowmend.operators import check_library

BEFORE = textwrap.dedent('''
    def solve(task):
        code = llm(task.prompt)
        return code
''')

MACRO = {
    "schema": "flowmend.macro/1", "name": "verify-then-retry", "version": 1,
    "description": "Check a step's code with verify, then retry the step until verify passes.",
    "params": {"attempts": {"fills": "wrap-in-retry.max_attempts", "default": 3,
                            "doc": "How many times the step may run."}},
    "sequence": [{"op": "insert-verify-step", "args": {}},
                 {"op": "wrap-in-retry", "args": {"max_attempts": "$attempts",
                                                  "until": "verify"}}],
}


def _write(tmp_path, macro: dict):
    path = tmp_path / f"{macro['name']}.json"
    path.write_text(json.dumps(macro))
    return path


def _after(attempts: int) -> str:
    from flowmend.operators._macro import macro_operator

    wf = parse_workflow(BEFORE)
    result = macro_operator({**MACRO, "examples": []})().apply(wf, {"step": "code"},
                                                              {"attempts": attempts})
    assert isinstance(result, Applied)
    return result.source


def test_a_macro_applies_its_sequence_and_passes_the_builtins_gate(tmp_path):
    after = _after(2)
    assert "range(2)" in after and after.count("verify(code)") == 2
    macro = {**MACRO, "examples": [{"before": BEFORE, "args": {"attempts": 2}, "after": after}],
             # A plan is not code: the first operator does not apply, so neither does the macro.
             "not_applicable": [{"before": "def solve(task):\n    plan = llm(task.prompt)\n"
                                           "    return len(plan)\n", "args": {}}]}
    library = load_library(["builtin", str(_write(tmp_path, macro))])
    cls = library.get("verify-then-retry")
    assert cls.kind == "structure" and cls.args_schema()["properties"]["attempts"]["maximum"] == 5
    assert check_library(load_library([str(_write(tmp_path, macro))]), fuzz_examples=10) == []
    assert library.digest != load_library(["builtin"]).digest


def test_a_macro_whose_example_is_wrong_fails_the_gate(tmp_path):
    macro = {**MACRO, "examples": [{"before": BEFORE, "args": {"attempts": 2},
                                    "after": _after(3)}]}
    failures = check_library(load_library([str(_write(tmp_path, macro))]), fuzz_examples=0)
    assert [f.case for f in failures] == ["EXAMPLES[0]"]


@pytest.mark.parametrize("change, message", [
    ({"sequence": [{"op": "wrap-in-retry", "args": {}}]}, "at least two operators"),
    ({"sequence": [{"op": "no-such-op"}, {"op": "wrap-in-retry"}]}, "names no built-in operator"),
    ({"params": {}}, "hole(s) $attempts name no param"),
    ({"params": {"attempts": {"fills": "wrap-in-retry.nothing"}}}, "fills no built-in argument"),
    ({"colour": "blue"}, "unknown field(s) colour"),
])
def test_a_malformed_macro_is_refused_in_one_line(tmp_path, change, message):
    path = _write(tmp_path, {**MACRO, "examples": [], **change})
    with pytest.raises(LibraryError) as err:
        load_library([str(path)])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(path) in str(err.value)
