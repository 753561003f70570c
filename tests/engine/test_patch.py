"""Patches as JSON: parsing, validation errors, and applying lists in order."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from flowmend.engine import (
    PATCH_SCHEMA,
    Applied,
    Invalid,
    NotApplicable,
    Patch,
    PatchError,
    Reason,
    apply_patch,
    apply_patches,
    diff,
    loads_patches,
    parse_workflow,
    read_patches,
    validate,
)
from flowmend.errors import UserError

SEED = (Path(__file__).resolve().parents[2] / "examples" / "workflows" / "plan_then_code.py").read_text()


def patch_json(**over):
    data = {"schema": PATCH_SCHEMA, "operator": "set-call-params", "target": {"step": "code"},
            "args": {"temperature": 0.7}}
    data.update(over)
    return data


def test_patch_round_trips_through_json():
    patch = Patch.from_json(patch_json())
    assert patch == Patch("set-call-params", {"step": "code"}, {"temperature": 0.7})
    assert Patch.from_json(json.loads(patch.dumps())) == patch
    assert hash(patch) == hash(Patch.from_json(patch.to_json()))
    assert patch.to_json()["schema"] == "flowmend.patch/1"


def test_args_and_target_may_be_omitted():
    patch = Patch.from_json({"schema": PATCH_SCHEMA, "operator": "x"})
    assert patch.target == {} and patch.args == {}


@pytest.mark.parametrize("text,message", [
    ('{"schema": "flowmend.patch/1", "operator": ', "p.json:1:44: not JSON"),
    ("[]", "p.json: the patch list is empty"),
    ('"wrap"', "p.json: a patch must be a JSON object, got a string"),
    (json.dumps(patch_json(schema="flowmend.patch/2")), 'p.json: "schema" must be "flowmend.patch/1", got "flowmend.patch/2"'),
    (json.dumps({"operator": "x"}), 'p.json: "schema" must be "flowmend.patch/1", got nothing'),
    (json.dumps(patch_json(operator="")), 'p.json: "operator" must be a non-empty string'),
    (json.dumps(patch_json(target="code")), 'p.json: "target" must be an object, got a string'),
    (json.dumps(patch_json(args=[1])), 'p.json: "args" must be an object, got a list'),
    (json.dumps(patch_json(extra=1)), "p.json: unknown key(s) extra"),
    (json.dumps([patch_json(), patch_json(target=None)]), 'p.json: patch 2: "target" must be an object, got null'),
])
def test_malformed_patches_say_what_and_where(text, message):
    with pytest.raises(PatchError) as info:
        loads_patches(text, where="p.json")
    assert isinstance(info.value, UserError)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_read_patches_names_a_missing_file(tmp_path):
    with pytest.raises(PatchError, match="cannot read patch file"):
        read_patches(tmp_path / "missing.json")


def test_unknown_operator_and_bad_args_are_invalid():
    unknown = validate(Patch("no-such-op", {"step": "code"}, {}))
    assert isinstance(unknown, Invalid) and unknown.reason is Reason.UNKNOWN_OPERATOR
    assert "set-call-params" in unknown.detail  # the message lists what exists
    bad = validate(Patch("set-call-params", {"step": "code"}, {"temperature": 9}))
    assert isinstance(bad, Invalid) and bad.reason is Reason.BAD_ARGS and "temperature" in bad.detail


def test_unknown_step_is_not_applicable():
    wf = parse_workflow(SEED)
    result = apply_patch(wf, Patch("set-call-params", {"step": "nope"}, {"temperature": 0.5}))
    assert isinstance(result, NotApplicable) and result.reason is Reason.UNKNOWN_STEP
    assert "plan, code" in result.detail


def test_apply_is_pure_and_deterministic():
    wf = parse_workflow(SEED, path="plan_then_code.py")
    patch = Patch("set-call-params", {"step": "code"}, {"temperature": 0.7})
    first, second = apply_patch(wf, patch), apply_patch(wf, patch)
    assert isinstance(first, Applied) and first == second
    assert wf.source == SEED and wf.module.code == SEED  # the parent is untouched
    assert 'code = llm(f"Write code based on plan:\\n{plan}", temperature=0.7)' in first.source
    assert first.diff == diff(SEED, first.source, "plan_then_code.py")


def test_a_list_applies_in_order_and_diffs_against_the_original():
    patches = [
        Patch("set-call-params", {"step": "code"}, {"temperature": 0.7}),
        Patch("set-call-params", {"step": "plan"}, {"max_tokens": 64}),
    ]
    result = apply_patches(SEED, patches, path="seed.py")
    assert isinstance(result, Applied)
    assert "temperature=0.7" in result.source and "max_tokens=64" in result.source
    assert result.diff.startswith("--- a/seed.py\n+++ b/seed.py\n")
    assert result.diff.count("\n-    ") == 2  # both step lines changed, nothing else


def test_a_failing_patch_in_a_list_says_which():
    patches = [
        Patch("set-call-params", {"step": "code"}, {"temperature": 0.7}),
        Patch("set-call-params", {"step": "missing"}, {"temperature": 0.7}),
    ]
    result = apply_patches(SEED, patches)
    assert isinstance(result, NotApplicable) and result.detail.startswith("patch 2: ")


def test_unparseable_source_is_an_invalid_result_not_an_exception():
    result = apply_patches("def solve(:\n", [Patch("set-call-params", {"step": "a"}, {"n": 2})])
    assert isinstance(result, Invalid) and result.reason is Reason.PARSE


def test_with_a_library_a_patch_checks_its_arguments_once_at_the_boundary(monkeypatch):
    from flowmend.engine import default_library, parse_workflow

    library = default_library()
    data = {"schema": PATCH_SCHEMA, "operator": "wrap-in-retry", "target": {"step": "code"},
            "args": {"max_attempts": 2}}
    patch = Patch.from_json(data, library=library)
    assert patch.parsed == library.get("wrap-in-retry").Args(max_attempts=2)
    # Checked, its arguments are complete: the defaults are written out.
    assert patch.args == {"max_attempts": 2, "until": "no-exception"}
    assert patch == Patch.from_json({**data, "args": patch.args})
    with pytest.raises(PatchError, match="max_attempts must be between 2 and 5"):
        Patch.from_json({**data, "args": {"max_attempts": 9}}, library=library)
    with pytest.raises(PatchError, match="no operator 'nope'"):
        Patch.from_json({**data, "operator": "nope"}, library=library)
    # Applying it checks nothing again...
    wf = parse_workflow("def solve(task):\n    code = llm(task.prompt)\n    return code\n")
    cls = library.get("wrap-in-retry")
    monkeypatch.setattr(cls, "parse_args", classmethod(lambda c, d: pytest.fail("checked twice")))
    assert "range(2)" in apply_patch(wf, patch).source
    # ...unless its JSON arguments no longer say what the checked ones do.
    changed = dataclasses.replace(patch, args={"max_attempts": 3})
    with pytest.raises(pytest.fail.Exception, match="checked twice"):
        apply_patch(wf, changed)
