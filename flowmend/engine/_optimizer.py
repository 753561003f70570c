"""The weak optimizer's side of the loop: a short localised prompt, a numbered menu, a choice.

The model answers with menu numbers under constrained decoding (a `choice` request), so a weak
model cannot answer outside the menu; it writes free text only where an argument is text
(the new text of a prompt).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from flowmend.engine._menu import MenuItem
from flowmend.engine._patch import Patch
from flowmend.engine._workflow import Workflow
from flowmend.task import Task

@dataclass(frozen=True)
class OptimizerConfig:
    """How the optimizer is asked.

    Attributes:
        menu_size: the most menu items shown at once (a weak model reads a short menu better).
        temperature: sampling temperature of the menu choice (m samples per iteration).
        text_max_tokens: the longest free text (a rewritten prompt) it may write.
        task_chars, summary_chars, prompt_chars: truncation of what the prompt shows.
    """

    menu_size: int = 12
    temperature: float = 1.0
    text_max_tokens: int = 160
    task_chars: int = 500
    summary_chars: int = 500
    prompt_chars: int = 160

    def __post_init__(self) -> None:
        if not 2 <= self.menu_size <= 99:
            raise ValueError("menu_size must lie in [2, 99]")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must lie in [0, 2]")


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
    menu = "\n".join(
        f"{i}. {item.label}: {item.description}" for i, item in enumerate(items, start=1)
    )
    return (
        "You improve a Python program that calls a language model to solve a coding task.\n\n"
        f"Task:\n{_clip(task.prompt, config.task_chars)}\n\n"
        f"The program's model calls (step: prompt):\n{steps}\n\n"
        f"Result of the last run:\n{_clip(summary, config.summary_chars)}\n\n"
        f"Edits you can make:\n{menu}\n\n"
        "Answer with the number of the edit most likely to fix the failure."
    )


def text_prompt(task: Task, wf: Workflow, item: MenuItem, summary: str,
                config: OptimizerConfig) -> str:
    """Asks for the new text of a prompt, keeping its placeholders."""
    step = wf.step(item.patch.target["step"])
    current = step.prompt.text if step.prompt and step.prompt.text else ""
    keep = ", ".join("{" + p + "}" for p in (step.prompt.placeholders if step.prompt else ()))
    keep_line = f" Keep these placeholders exactly: {keep}." if keep else ""
    return (
        "Rewrite the instruction a program sends to a language model so that the model "
        "writes correct Python code for the task.\n\n"
        f"Task:\n{_clip(task.prompt, config.task_chars)}\n\n"
        f"Problem with the current result:\n{_clip(summary, config.summary_chars)}\n\n"
        f"Current instruction:\n{current}\n\n"
        f"Write only the new instruction.{keep_line}"
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
