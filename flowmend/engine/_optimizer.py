"""The weak optimizer's side of the loop: a short localised prompt, a numbered menu, a choice.

The model answers with menu numbers under constrained decoding (a `choice` request), so a weak
model cannot answer outside the menu; it writes free text only where an argument is text
(the new text of a prompt).
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from flowmend.engine._menu import MenuItem
from flowmend.engine._patch import Patch
from flowmend.engine._workflow import Workflow
from flowmend.task import Task

# The two prompts as str.format templates. Each names the fields it may use; a template is
# checked when its config is built, so a learned set-up with a typo fails at once, not mid-run.
CHOICE_TEMPLATE = (
    "You improve a Python program that calls a language model to solve a coding task.\n\n"
    "Task:\n{task}\n\n"
    "The program's model calls (step: prompt):\n{steps}\n\n"
    "Result of the last run:\n{summary}\n\n"
    "Edits you can make:\n{menu}\n\n"
    "Answer with the number of the edit most likely to fix the failure."
)
TEXT_TEMPLATE = (
    "Rewrite the instruction a program sends to a language model so that the model "
    "writes correct Python code for the task.\n\n"
    "Task:\n{task}\n\n"
    "Problem with the current result:\n{summary}\n\n"
    "Current instruction:\n{instruction}\n\n"
    "Write only the new instruction.{keep_placeholders}"
)
# (fields a template may name, fields it must name)
CHOICE_FIELDS = (("task", "steps", "summary", "menu"), ("menu",))
TEXT_FIELDS = (("task", "summary", "instruction", "keep_placeholders"), ("instruction",))


@dataclass(frozen=True)
class OptimizerConfig:
    """How the optimizer is asked.

    Attributes:
        menu_size: the most menu items shown at once (a weak model reads a short menu better).
        temperature: sampling temperature of the menu choice (m samples per iteration).
        text_max_tokens: the longest free text (a rewritten prompt) it may write.
        task_chars, summary_chars, prompt_chars: truncation of what the prompt shows.
        choice_template: the menu prompt; fields {task}, {steps}, {summary} and {menu}
            (required: the numbered menu).
        text_template: the prompt asking for a new instruction; fields {task}, {summary},
            {instruction} (required: the current one) and {keep_placeholders} (a sentence
            naming the placeholders to keep, or nothing).
    """

    menu_size: int = 12
    temperature: float = 1.0
    text_max_tokens: int = 160
    task_chars: int = 500
    summary_chars: int = 500
    prompt_chars: int = 160
    choice_template: str = CHOICE_TEMPLATE
    text_template: str = TEXT_TEMPLATE

    def __post_init__(self) -> None:
        if not 2 <= self.menu_size <= 99:
            raise ValueError("menu_size must lie in [2, 99]")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must lie in [0, 2]")
        for name in ("text_max_tokens", "task_chars", "summary_chars", "prompt_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_template("choice_template", self.choice_template, *CHOICE_FIELDS)
        check_template("text_template", self.text_template, *TEXT_FIELDS)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "OptimizerConfig":
        return cls(**_known(cls, data, "optimizer"))


def check_template(name: str, template: Any, allowed: Sequence[str], required: Sequence[str]
                   ) -> None:
    """Raise ValueError naming the field when `template` names an unknown or omits a required one."""
    if not isinstance(template, str):
        raise ValueError(f"{name} must be a string, got {type(template).__name__}")
    try:
        named = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise ValueError(f"{name} is not a format template: {err}") from None
    for field_name in named:
        if field_name not in allowed:
            shown = repr(field_name) if field_name else "a positional {}"
            raise ValueError(f"{name}: unknown field {shown}; known: {', '.join(allowed)}")
    for field_name in required:
        if field_name not in named:
            raise ValueError(f"{name}: missing required field {{{field_name}}}")


def _known(cls, data: Any, where: str) -> dict[str, Any]:
    """`data` as keyword arguments of `cls`; an unknown key is a ValueError naming it."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {where} field {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return dict(data)


def shown_menu(items: list[MenuItem], size: int, rng: random.Random) -> list[MenuItem]:
    """At most `size` items, drawn round-robin across operators so that every kind of edit shows.

    The order inside each operator is shuffled by `rng` (seeded per task and iteration), so
    successive iterations show different presets and the run stays reproducible.
    """
    by_op: dict[str, list[MenuItem]] = {}
    for item in items:
        by_op.setdefault(item.patch.operator, []).append(item)
    for group in by_op.values():
        rng.shuffle(group)
    order = sorted(by_op)
    rng.shuffle(order)
    shown: list[MenuItem] = []
    while len(shown) < size and any(by_op.values()):
        for name in order:
            if by_op[name] and len(shown) < size:
                shown.append(by_op[name].pop(0))
    return shown


def choice_prompt(task: Task, wf: Workflow, summary: str, items: list[MenuItem],
                  config: OptimizerConfig) -> str:
    """The optimizer's prompt: the task, the steps, what failed, and the numbered menu."""
    steps = "\n".join(
        f"- {s.id} (line {s.line}): {_clip(s.prompt.text if s.prompt and s.prompt.text else '?', config.prompt_chars)}"
        for s in wf.steps
    )
    return config.choice_template.format(
        task=_clip(task.prompt, config.task_chars),
        steps=steps,
        summary=_clip(summary, config.summary_chars),
        menu=numbered(items),
    )


def numbered(items: Sequence[MenuItem]) -> str:
    """The menu as the optimizer reads it: ``1. label: description``, one item a line."""
    return "\n".join(
        f"{i}. {item.label}: {item.description}" for i, item in enumerate(items, start=1)
    )


def text_prompt(task: Task, wf: Workflow, item: MenuItem, summary: str,
                config: OptimizerConfig) -> str:
    """Asks for the new text of a prompt, keeping its placeholders."""
    step = wf.step(item.patch.target["step"])
    current = step.prompt.text if step.prompt and step.prompt.text else ""
    keep = ", ".join("{" + p + "}" for p in (step.prompt.placeholders if step.prompt else ()))
    return config.text_template.format(
        task=_clip(task.prompt, config.task_chars),
        summary=_clip(summary, config.summary_chars),
        instruction=current,
        keep_placeholders=f" Keep these placeholders exactly: {keep}." if keep else "",
    )


def with_text(item: MenuItem, text: str) -> Patch:
    """The item's patch with the optimizer's free text put into its text argument."""
    return Patch(item.patch.operator, dict(item.patch.target),
                 {**item.patch.args, item.text_arg: text.strip()})


def parse_choice(answer: str, count: int) -> int | None:
    """The 0-based menu index an answer names, or None when it names none."""
    text = answer.strip().rstrip(".")
    if text.isdigit() and 1 <= int(text) <= count:
        return int(text) - 1
    return None


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
