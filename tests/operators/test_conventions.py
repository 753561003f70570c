"""The operators on workflows written in other step conventions: every menu edit keeps the
fuzz properties (parses, compiles, text outside the edit unchanged, idempotence, add/remove
round trip), and inserted code follows the convention."""

from pathlib import Path

import pytest

from flowmend.engine import (Applied, Convention, NotApplicable, Patch, Reason, apply_patch,
                             find_project_config, menu, parse_workflow)
from flowmend.operators._fuzz import check_application

FIXTURES = Path(__file__).resolve().parents[2] / "examples" / "workflows" / "conventions"
NAMES = ("class_async", "agent_tuples", "agent_list", "debate", "dict_answer", "mixed")


def fixture(name: str):
    path = FIXTURES / name / f"{name}.py"
    config = find_project_config(path)
    return parse_workflow(path.read_text(), entry=config.entry or "solve",
                          conventions=config.conventions, path=str(path))


@pytest.mark.parametrize("name", NAMES)
def test_every_menu_edit_on_a_fixture_keeps_the_properties(name):
    wf = fixture(name)
    items = menu(wf)
    applied = 0
    for item in items:
        result = check_application(wf, item.patch.operator, item.patch.target, item.patch.args)
        applied += isinstance(result, Applied)
    assert applied == len(items)


@pytest.mark.parametrize("name", NAMES)
def test_every_fixture_offers_prompt_edits_verify_steps_sampling_and_added_steps(name):
    offered = {item.patch.operator for item in menu(fixture(name))}
    assert {"rewrite-prompt-literal", "insert-verify-step", "sample-and-select",
            "add-step"} <= offered


def _applied(wf, operator, step, args=None):
    result = apply_patch(wf, Patch(operator, {"step": step}, args or {}))
    assert isinstance(result, Applied), result
    return result.source


def test_verify_steps_read_the_text_answer_through_the_accessor():
    dict_wf = fixture("dict_answer")
    source = _applied(dict_wf, "insert-verify-step", "solution")
    assert "check = verify(solution['response'])" in source
    assert "solution = generate(problem=task.prompt, instruction=f\"The code below" in source
    assert "{solution['response']}" in source
    tuples = fixture("agent_tuples")
    source = _applied(tuples, "insert-verify-step", "code")
    assert "check = verify(code)" in source
    assert "thinking, code = cot_agent([task.prompt, thinking, answer], f\"" in source


def test_sample_and_select_passes_temperature_only_to_a_callee_that_takes_it():
    class_wf = fixture("class_async")
    presets = [i.patch.args for i in menu(class_wf, operators=["sample-and-select"])]
    assert presets and all(p["temperature"] is None for p in presets)
    refused = apply_patch(class_wf, Patch("sample-and-select", {"step": "solution"},
                                          {"n": 3, "temperature": 0.8}))
    assert isinstance(refused, NotApplicable) and refused.reason is Reason.CONVENTION
    source = _applied(class_wf, "sample-and-select", "solution", {"n": 3, "temperature": None})
    assert "verify(sample['response'])" in source and "temperature" not in source
    tuples = fixture("agent_tuples")
    source = _applied(tuples, "sample-and-select", "answer", {"n": 2})
    assert "temperature=0.8" in source and "verify(sample[1])" in source
    assert "cot_agent([task.prompt], cot_instruction, temperature=0.8)" in source


def test_set_call_params_and_swap_model_offer_only_what_the_callee_accepts():
    tuples = fixture("agent_tuples")
    args = [i.patch.args for i in menu(tuples, operators=["set-call-params", "swap-model"])]
    assert args and all({k for k, v in a.items() if v is not None} == {"temperature"} for a in args)
    refused = apply_patch(tuples, Patch("set-call-params", {"step": "code"}, {"max_tokens": 64}))
    assert isinstance(refused, NotApplicable) and refused.reason is Reason.CONVENTION
    assert "takes no max_tokens" in refused.detail
    refused = apply_patch(fixture("class_async"), Patch("swap-model", {"step": "draft"},
                                                        {"model": "smollm2"}))
    assert refused.reason is Reason.CONVENTION and "takes no model" in refused.detail


def test_add_step_threads_its_answer_into_the_prompt_the_convention_names():
    source = _applied(fixture("class_async"), "add-step", "solution")
    assert "instruction=f\"Review this draft" in source
    assert "+ f\"\\n\\nPlan:\\n{plan['response']}\"" in source
    source = _applied(fixture("agent_tuples"), "add-step", "answer")
    assert "cot_agent([task.prompt], cot_instruction + f\"\\n\\nPlan:\\n{plan[1]}\"" in source


def test_an_edit_of_a_shared_prompt_variable_says_which_steps_it_changes():
    conv = Convention(name="agent", callees=("agent",), prompt=("#1",), answer="item:1")
    wf = parse_workflow(
        "def solve(task):\n"
        "    instruction = \"Solve it.\"\n"
        "    thinking, code = agent([task.prompt], instruction)\n"
        "    thinking, again = agent([task.prompt, code], instruction)\n"
        "    return again\n", conventions=[conv])
    items = menu(wf, operators=["append-instruction"])
    assert items[0].label.startswith("append-instruction@code+again(")
    assert "changes steps again too" in items[0].description
    source = _applied(wf, "append-instruction", "code", {"sentence": "Be brief."})
    assert source.count("instruction)") == 2 and "Solve it.\\nBe brief." in source


def test_a_tuple_target_the_convention_cannot_read_is_refused_with_the_reason():
    conv = Convention(name="pair", callees=("agent",), prompt=("#0",))
    wf = parse_workflow("def solve(task):\n    thinking, code = agent(task.prompt)\n"
                        "    return code\n", conventions=[conv])
    refused = apply_patch(wf, Patch("insert-verify-step", {"step": "thinking"}, {}))
    assert isinstance(refused, NotApplicable) and refused.reason is Reason.CONVENTION
    assert "names no item:N answer" in refused.detail
