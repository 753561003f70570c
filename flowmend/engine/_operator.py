"""The operator base class and the examples on it.

An operator is a typed edit of a workflow. Subclasses live in `flowmend.operators` (or in an
out-of-tree module, or are defined as data); an `OperatorLibrary` (`_library.py`) collects
them, so the engine never imports an operator module directly. `Operator.apply` never raises:
every outcome is data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import libcst as cst

from flowmend.engine._args import (  # noqa: F401 - the operator author's vocabulary, in one place
    ArgsError, Between, Identifier, NoArgs, Text, args_schema, args_to_json, check_bounds,
    field_docs, parse_args,
)
from flowmend.engine._checks import (  # noqa: F401
    RUNTIME_NAMES, check_result, entry_signature, find_function, unified_diff,
)
from flowmend.engine._result import (  # noqa: F401
    Applied, Edits, Invalid, NotApplicable, Reason, Refusal, Result,
)
from flowmend.engine._workflow import Workflow


@dataclass(frozen=True)
class Case:
    """An example on an operator class, run by one parametrised test for every operator.

    Attributes:
        before: workflow source (dedented before use).
        args: the operator's arguments as JSON data.
        after: the expected source, or None for a not-applicable case.
        target: the site, e.g. ``{"step": "code"}``; None means the operator's first site for an
            example, and "the operator lists no site at all" for a not-applicable case.
        entry: the workflow's entry function.
    """

    before: str
    args: dict = field(default_factory=dict)
    after: str | None = None
    target: dict | None = None
    entry: str = "solve"


class Operator:
    """A typed, checked edit of a workflow.

    Subclasses set the class attributes and implement `sites` and `transform`; `presets` and
    `edit_region` have defaults. `apply` validates the arguments and the target, runs
    `transform`, and checks the result (parses, compiles, entry signature unchanged, no free
    variable introduced).
    """

    name: ClassVar[str]
    kind: ClassVar[str]  # "prompt" | "structure"
    # Bumped when the operator's behaviour changes; part of the library digest.
    VERSION: ClassVar[int] = 1
    Args: ClassVar[type] = NoArgs
    # The argument the optimizer writes as free text (a new prompt), if any.
    TEXT_ARG: ClassVar[str | None] = None
    DESCRIPTION: ClassVar[str]
    EXAMPLES: ClassVar[list[Case]] = []
    NOT_APPLICABLE: ClassVar[list[Case]] = []
    # Operators whose second application with the same target and arguments changes nothing.
    IDEMPOTENT: ClassVar[bool] = False
    # Operators that edit the text of a step's prompt where it is held: when a prompt variable
    # is shared by several steps, the edit changes them all, and the menu says so.
    EDITS_PROMPT_TEXT: ClassVar[bool] = False

    def sites(self, wf: Workflow) -> list[dict]:
        """Every target this operator applies to in `wf`, e.g. ``[{"step": "code"}]``."""
        raise NotImplementedError

    def presets(self, wf: Workflow, target: dict) -> list[Any]:
        """Argument presets the menu offers at `target`; defaults to the default arguments."""
        try:
            return [self.Args()]
        except (TypeError, ArgsError):
            return []

    def why_not(self, wf: Workflow, target: dict) -> Refusal | None:
        """Why `target` is not a site, when the operator can say more than "does not apply"
        (a step convention it cannot keep); None otherwise."""
        return None

    def transform(self, wf: Workflow, target: dict, args: Any) -> cst.Module | str:
        """The libcst edit: a new module (or its source text). Raise `Refusal` to decline."""
        raise NotImplementedError

    def edit_region(self, wf: Workflow, target: dict, args: Any) -> list[tuple[int, int]]:
        """Line ranges (1-based, inclusive) of `wf.source` that an application may change.

        Everything outside them must come out byte-identical; the property tests check it.
        """
        raise NotImplementedError

    @classmethod
    def args_schema(cls) -> dict:
        return args_schema(cls.Args)

    @classmethod
    def parse_args(cls, data: Any) -> Any:
        return parse_args(cls.Args, data)

    def apply(self, wf: Workflow, target: dict, args: Any = None) -> Result:
        """Apply at `target` with `args`. Never raises.

        `args` is the operator's argument dataclass, taken as it is (it checked itself when it
        was built), or JSON data, checked here.
        """
        try:
            return self._apply(wf, target, args)
        except Refusal as refusal:
            return refusal.result()
        except RecursionError:
            return Invalid(Reason.INTERNAL, f"{self.name}: recursion limit reached")
        except Exception as err:  # noqa: BLE001 - results are data, never exceptions
            return Invalid(Reason.INTERNAL, f"{self.name}: {type(err).__name__}: {err}")

    def _apply(self, wf: Workflow, target: dict, args: Any) -> Result:
        if not isinstance(args, self.Args):
            try:
                args = self.parse_args({} if args is None else args)
            except ArgsError as err:
                return Invalid(Reason.BAD_ARGS, f"{self.name}: {err}")
        if not isinstance(target, dict):
            return Invalid(Reason.BAD_TARGET, f"{self.name}: target must be an object")
        for key in ("step", "with"):
            step_id = target.get(key)
            if step_id is None:
                continue
            try:
                wf.step(step_id)
            except (KeyError, TypeError):
                known = ", ".join(s.id for s in wf.steps) or "none"
                return NotApplicable(
                    Reason.UNKNOWN_STEP, f"{self.name}: no step {step_id!r} (steps: {known})"
                )
        # The menu listed the sites already; every candidate of one parent shares them.
        if target not in wf.cached(("sites", type(self)), lambda: self.sites(wf)):
            refusal = self.why_not(wf, target)
            if refusal is not None:
                return refusal.result()
            return NotApplicable(
                Reason.PRECONDITION, f"{self.name} does not apply at {_show_target(target)}"
            )
        module = self.transform(wf, target, args)
        if isinstance(module, Edits):
            return check_result(wf, module.module.code, module.files)
        return check_result(wf, module.code if isinstance(module, cst.Module) else str(module))


def _show_target(target: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in target.items()) or "{}"
