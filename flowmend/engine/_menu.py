"""The menu a weak optimizer chooses from: every operator × site × argument preset, labelled.

Each item carries a ready `Patch`; its label is short, stable for the same workflow, and unique
within the menu, so a model can answer with a label (or its number) under constrained decoding.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flowmend.engine._args import args_to_json
from flowmend.engine._library import OperatorLibrary, default_library
from flowmend.engine._patch import Patch
from flowmend.engine._workflow import Workflow

_KINDS = ("prompt", "structure")


@dataclass(frozen=True)
class MenuItem:
    """One applicable edit: which operator, where, with which preset arguments.

    Attributes:
        label: short and unique in its menu, e.g. ``wrap-in-retry@code(max_attempts=3)``.
        patch: the patch that performs it.
        kind: the operator's kind, ``prompt`` or ``structure``.
        description: the operator's one-line description.
        text_arg: the argument the optimizer writes as free text (the operator's `TEXT_ARG`),
            or None.
    """

    label: str
    patch: Patch
    kind: str
    description: str
    text_arg: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "description": self.description,
            "patch": self.patch.to_json(),
        }


def menu(
    wf: Workflow,
    *,
    library: OperatorLibrary | None = None,
    kinds: Iterable[str] | None = None,
    operators: Iterable[str] | None = None,
) -> list[MenuItem]:
    """Every operator × site × preset that the operators' preconditions admit on `wf`.

    Args:
        library: the operators to offer (default: the built-ins).
        kinds: keep only operators of these kinds (``prompt``, ``structure``); None keeps all.
        operators: keep only these operator names; None keeps all.

    Items come in a stable order: by operator name, then site order, then preset order.
    """
    wanted_kinds = set(_KINDS if kinds is None else kinds)
    unknown = wanted_kinds - set(_KINDS)
    if unknown:
        raise ValueError(f"unknown operator kind(s): {', '.join(sorted(unknown))}")
    wanted_ops = None if operators is None else set(operators)
    items: list[MenuItem] = []
    seen: dict[str, int] = {}
    for cls in (default_library() if library is None else library).operators():
        if cls.kind not in wanted_kinds or (wanted_ops is not None and cls.name not in wanted_ops):
            continue
        op = cls()
        defaults = _defaults(cls)
        for target in op.sites(wf):
            also = _also_changes(wf, cls, target)
            description = cls.DESCRIPTION + (
                f" The prompt is shared: this edit changes steps {', '.join(also)} too."
                if also else "")
            for args in op.presets(wf, target):
                data = args_to_json(args)
                label = _label(cls.name, target, data, defaults, also)
                n = seen.get(label, 0) + 1
                seen[label] = n
                if n > 1:
                    label = f"{label}#{n}"
                items.append(
                    MenuItem(label, Patch(cls.name, dict(target), data, args), cls.kind,
                             description, cls.TEXT_ARG)
                )
    return items


def _defaults(cls: type) -> dict[str, Any]:
    """Default argument values (read from the dataclass: its schema reads source docstrings)."""
    if not dataclasses.is_dataclass(cls.Args):
        return {}
    return {
        f.name: f.default for f in dataclasses.fields(cls.Args) if f.default is not dataclasses.MISSING
    }


def _also_changes(wf: Workflow, cls: type, target: dict) -> list[str]:
    """The other steps whose prompt an edit of this step's prompt text changes too."""
    if not getattr(cls, "EDITS_PROMPT_TEXT", False) or set(target) != {"step"}:
        return []
    prompt = wf.step(target["step"]).prompt
    return [s for s in prompt.shared_by if s != target["step"]] if prompt is not None else []


def _label(name: str, target: dict, args: dict, defaults: dict, also: list[str] = ()) -> str:
    site = target.get("step") if set(target) == {"step"} else ",".join(
        f"{k}={_short(v)}" for k, v in sorted(target.items())
    )
    if also:
        site = "+".join([site, *also])  # a shared prompt: every step the edit changes
    shown = [f"{k}={_short(v)}" for k, v in args.items() if k not in defaults or defaults[k] != v]
    label = f"{name}@{site}" if site else name
    return f"{label}({','.join(shown)})" if shown else label


def _short(value: Any, limit: int = 24) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
