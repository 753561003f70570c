"""What applying an operator returns: data, never an exception across the API.

`Applied` carries the new workflow; `NotApplicable` and `Invalid` say why not, with a `Reason`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Union

import libcst as cst

from flowmend.engine._workflow import Workflow


class Reason(enum.Enum):
    """Why an operator did not produce a usable workflow."""

    UNKNOWN_OPERATOR = "unknown-operator"
    UNKNOWN_STEP = "unknown-step"
    BAD_TARGET = "bad-target"
    BAD_ARGS = "bad-args"
    PRECONDITION = "precondition"  # the target is not one of the operator's sites
    PLACEHOLDER = "placeholder"  # a rewrite would drop a placeholder that reads a live variable
    SHARED_CONSTANT = "shared-constant"  # a module-level prompt constant is used by other steps
    DATA_FLOW = "data-flow"  # the edit would break which values reach which steps
    CONVENTION = "convention"  # the edit cannot keep the step's convention (a parameter its callee does not take)
    PARSE = "parse"
    COMPILE = "compile"
    SIGNATURE = "signature"  # the entry function's signature changed
    FREE_VARIABLE = "free-variable"  # the edit reads a name nothing defines
    INTERNAL = "internal"  # the operator itself crashed: a bug, reported as data


@dataclass(frozen=True)
class Applied:
    """The operator produced a new workflow that passed the post-application checks.

    Attributes:
        source: the new workflow's source.
        diff: unified diff of the parent's source against it.
        workflow: the new workflow, made from the module the checks parsed: nobody parses it
            again.
        library_digest: the digest of the operator library the patch was applied with (set
            by `apply_patch`; None for a direct `Operator.apply`).
        files: the new text of every other file the edits changed, by path (a sibling prompt
            module); writing the result writes these too, all or none.
    """

    source: str
    diff: str
    workflow: Workflow = field(compare=False, repr=False)
    library_digest: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NotApplicable:
    """The operator does not apply at this target with these arguments; nothing was edited."""

    reason: Reason
    detail: str


@dataclass(frozen=True)
class Invalid:
    """The request was malformed, or the edited workflow failed a post-application check."""

    reason: Reason
    detail: str


Result = Union[Applied, NotApplicable, Invalid]


@dataclass(frozen=True)
class Edits:
    """What an operator's `transform` returns when its edit changes sibling modules too: the
    workflow's new module, and by path each other file's text before and after."""

    module: cst.Module
    files: Mapping[str, tuple[str, str]]


class Refusal(Exception):
    """Raised inside an operator's `transform` to refuse; `apply` turns it into a result."""

    def __init__(self, reason: Reason, detail: str, *, invalid: bool = False):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.invalid = invalid

    def result(self) -> NotApplicable | Invalid:
        kind = Invalid if self.invalid else NotApplicable
        return kind(self.reason, self.detail)
