"""The optimizer's prompt building: templates as data, their field checks, the numbered menu."""

import random

import pytest

from flowmend import seeds
from flowmend.engine import OptimizerConfig, Patch, parse_workflow
from flowmend.engine._menu import MenuItem
from flowmend.engine._optimizer import (
    choice_prompt,
    numbered,
    parse_choice,
    shown_menu,
    text_prompt,
    with_text,
)
from flowmend.task import Task

TASK = Task("Toy/0", "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n", "add")
WF = parse_workflow(seeds.load("plan_then_code"))


def item(operator="append-instruction", step="code", label=None, **args):
    """A menu item as `menu` builds it: the operator's free-text argument named by the library."""
    from flowmend.engine import default_library

    return MenuItem(label or f"{operator}@{step}", Patch(operator, {"step": step}, args),
                    "prompt", f"what {operator} does",
                    text_arg=default_library().get(operator).TEXT_ARG)


def test_the_default_choice_prompt_is_the_shipped_text():
    prompt = choice_prompt(TASK, WF, "0/2 visible checks passed", [item(), item("wrap-in-retry")],
                           OptimizerConfig())
    assert prompt == (
        "You improve a Python program that calls a language model to solve a coding task.\n\n"
        f"Task:\n{TASK.prompt.strip()}\n\n"
        "The program's model calls (step: prompt):\n"
        "- plan (line 9): Plan: {task.prompt}\n"
        "- code (line 10): Write code based on plan:\n{plan}\n\n"
        "Result of the last run:\n0/2 visible checks passed\n\n"
        "Edits you can make:\n"
        "1. append-instruction@code: what append-instruction does\n"
        "2. wrap-in-retry@code: what wrap-in-retry does\n\n"
        "Answer with the number of the edit most likely to fix the failure."
    )


def test_the_default_text_prompt_names_the_placeholders_to_keep():
    prompt = text_prompt(TASK, WF, item("rewrite-prompt-literal"), "failed", OptimizerConfig())
    assert prompt.startswith("Rewrite the instruction a program sends to a language model")
    assert "Current instruction:\nWrite code based on plan:\n{plan}\n\n" in prompt
    assert prompt.endswith("Write only the new instruction. Keep these placeholders exactly: {plan}.")


def test_templates_are_data_and_truncation_applies_to_their_fields():
    config = OptimizerConfig(task_chars=8, summary_chars=6,
                             choice_template="{task}|{summary}|{menu}",
                             text_template="<{instruction}>{keep_placeholders}")
    assert choice_prompt(TASK, WF, "a long summary", [item()], config) == (
        "def add…|a lon…|1. append-instruction@code: what append-instruction does")
    plan = text_prompt(TASK, WF, item("rewrite-prompt-literal", step="plan"), "x", config)
    assert plan == "<Plan: {task.prompt}> Keep these placeholders exactly: {task.prompt}."
    # Literal braces are written doubled, as str.format wants.
    assert choice_prompt(TASK, WF, "", [item()], OptimizerConfig(
        choice_template="{{json}} {menu}")).startswith("{json} 1.")


@pytest.mark.parametrize("kwargs, message", [
    ({"choice_template": "{task} {menu} {tsk}"}, "choice_template: unknown field 'tsk'"),
    ({"choice_template": "{task}"}, r"choice_template: missing required field \{menu\}"),
    ({"choice_template": "{} {menu}"}, "choice_template: unknown field a positional"),
    ({"choice_template": "{menu.x}"}, "choice_template: unknown field 'menu.x'"),
    ({"choice_template": "{menu"}, "choice_template is not a format template"),
    ({"text_template": "{task} {menu}"}, "text_template: unknown field 'menu'"),
    ({"text_template": "{task}"}, r"text_template: missing required field \{instruction\}"),
    ({"text_template": 3}, "text_template must be a string"),
    ({"menu_size": 1}, "menu_size"),
    ({"text_max_tokens": 0}, "text_max_tokens must be a positive integer"),
])
def test_a_bad_template_is_a_value_error_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OptimizerConfig(**kwargs)


def test_optimizer_config_round_trips_through_json():
    config = OptimizerConfig(menu_size=5, text_template="{instruction}!")
    assert OptimizerConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown optimizer field 'menu'"):
        OptimizerConfig.from_json({"menu": 3})


def test_the_menu_is_numbered_from_one_and_answers_map_back():
    items = [item(label=f"edit{i}") for i in range(3)]
    assert numbered(items).splitlines() == [
        "1. edit0: what append-instruction does",
        "2. edit1: what append-instruction does",
        "3. edit2: what append-instruction does",
    ]
    assert [parse_choice(a, 3) for a in ("1", " 3.", "0", "4", "two", "")] == [0, 2, None, None, None, None]


def test_the_shown_menu_draws_round_robin_across_operators_reproducibly():
    items = ([item("append-instruction", label=f"a{i}") for i in range(5)]
             + [item("wrap-in-retry", label=f"w{i}") for i in range(5)]
             + [item("remove-step", label="r0")])
    shown = shown_menu(list(items), 4, random.Random(7))
    assert len(shown) == 4 and {i.patch.operator for i in shown} == {
        "append-instruction", "wrap-in-retry", "remove-step"}
    assert shown == shown_menu(list(items), 4, random.Random(7))
    assert len(shown_menu(list(items), 99, random.Random(0))) == len(items)


def test_with_text_puts_the_free_text_into_the_text_argument():
    patch = with_text(item("rewrite-prompt-literal", text="old"), "  New words.\n")
    assert patch.args == {"text": "New words."} and patch.operator == "rewrite-prompt-literal"
