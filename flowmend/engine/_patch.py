"""Patches as data: the JSON form, its validation, and applying a list of them in order.

A patch names an operator, a target and arguments. Applying is pure and deterministic: source in,
source out; failures are `NotApplicable`/`Invalid` results, never exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flowmend.engine._args import ArgsError, args_to_json
from flowmend.engine._checks import unified_diff
from flowmend.engine._library import OperatorLibrary, default_library
from flowmend.engine._result import Applied, Invalid, Reason, Result
from flowmend.engine._siblings import read_sibling
from flowmend.engine._workflow import Workflow, WorkflowError, parse_workflow
from flowmend.errors import UserError

PATCH_SCHEMA = "flowmend.patch/1"
_KEYS = ("schema", "operator", "target", "args")


class PatchError(UserError):
    """A patch file or patch object that is not a well-formed `flowmend.patch/1`."""


@dataclass(frozen=True)
class Patch:
    """One edit as data: ``{"schema": "flowmend.patch/1", "operator", "target", "args"}``.

    Attributes:
        operator: the operator's kebab-case name (``wrap-in-retry``).
        target: the site, e.g. ``{"step": "code"}``.
        args: the operator's arguments as JSON data.
        parsed: the same arguments as the operator's frozen argument dataclass, when they were
            checked already (a menu item's patch, `Patch.of`): applying it checks nothing again.
    """

    operator: str
    target: dict = field(default_factory=dict)
    args: dict = field(default_factory=dict)
    parsed: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, operator: str, target: dict, args: Any) -> "Patch":
        """A patch from an argument dataclass (checked when it was built)."""
        return cls(operator, dict(target), args_to_json(args), args)

    def __hash__(self) -> int:
        return hash(self.dumps())

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": PATCH_SCHEMA,
            "operator": self.operator,
            "target": dict(self.target),
            "args": dict(self.args),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(
        cls, data: Any, *, where: str = "patch", library: OperatorLibrary | None = None
    ) -> "Patch":
        """Check one patch object; `PatchError` names what is wrong and where.

        With a `library`, the operator must be in it and the arguments are checked now, once
        (the patch carries them as the operator's dataclass, and as JSON with the defaults
        written out). Without one only the shape is
        checked here: the operator and its arguments depend on the library the patch is
        applied with, and are checked then.
        """
        if not isinstance(data, dict):
            raise PatchError(f"a patch must be a JSON object, got {_json_type(data)}", where=where)
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise PatchError(
                f"unknown key(s) {', '.join(unknown)} (a patch has {', '.join(_KEYS)})", where=where
            )
        if data.get("schema") != PATCH_SCHEMA:
            got = json.dumps(data.get("schema")) if "schema" in data else "nothing"
            raise PatchError(f'"schema" must be "{PATCH_SCHEMA}", got {got}', where=where)
        operator = data.get("operator")
        if not isinstance(operator, str) or not operator:
            raise PatchError('"operator" must be a non-empty string', where=where)
        target = data.get("target", {})
        if not isinstance(target, dict):
            raise PatchError(f'"target" must be an object, got {_json_type(target)}', where=where)
        args = data.get("args", {})
        if not isinstance(args, dict):
            raise PatchError(f'"args" must be an object, got {_json_type(args)}', where=where)
        if library is None:
            return cls(operator, dict(target), dict(args))
        op = library.get(operator)
        if op is None:
            raise PatchError(
                f"no operator {operator!r} (known: {', '.join(library.names())})", where=where
            )
        try:
            return cls.of(operator, target, op.parse_args(args))
        except ArgsError as err:
            raise PatchError(f"{operator}: {err}", where=where) from None


def _json_type(value: Any) -> str:
    return {
        dict: "an object", list: "a list", str: "a string", bool: "a boolean",
        int: "a number", float: "a number", type(None): "null",
    }.get(type(value), type(value).__name__)


def loads_patches(text: str, *, where: str = "patch") -> list[Patch]:
    """Parse JSON text holding one patch object or a list of them."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PatchError(f"not JSON: {err.msg}", where=f"{where}:{err.lineno}:{err.colno}") from None
    if isinstance(data, list):
        if not data:
            raise PatchError("the patch list is empty", where=where)
        return [Patch.from_json(item, where=f"{where}: patch {i}") for i, item in enumerate(data, 1)]
    return [Patch.from_json(data, where=where)]


def read_patches(path: str | Path) -> list[Patch]:
    """Read a patch file (one patch or a list); errors name the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PatchError(f"cannot read patch file: {getattr(err, 'strerror', None) or err}", where=str(path)) from None
    return loads_patches(text, where=str(path))


def validate(patch: Patch, library: OperatorLibrary | None = None) -> Invalid | None:
    """The checks that need no workflow: an operator of the library (default: the built-ins),
    arguments that fit it."""
    checked = _checked(patch, default_library() if library is None else library)
    return checked if isinstance(checked, Invalid) else None


def _checked(patch: Patch, library: OperatorLibrary) -> tuple[type, Any] | Invalid:
    """The operator class and its argument dataclass, or why the patch names neither."""
    cls = library.get(patch.operator)
    if cls is None:
        return Invalid(
            Reason.UNKNOWN_OPERATOR,
            f"no operator {patch.operator!r} (known: {', '.join(library.names())})",
        )
    parsed = patch.parsed
    # `parsed` is trusted only while it still says what `args` says (a `dataclasses.replace`
    # of the args leaves it behind); comparing is far cheaper than checking again.
    if type(parsed) is cls.Args and args_to_json(parsed) == patch.args:
        return cls, parsed
    try:
        return cls, cls.parse_args(patch.args)
    except ArgsError as err:
        return Invalid(Reason.BAD_ARGS, f"{patch.operator}: {err}")


def apply_patch(wf: Workflow, patch: Patch, *, library: OperatorLibrary | None = None) -> Result:
    """Apply one patch to a parsed workflow with the operators of `library` (default: the
    built-ins). Never raises; an `Applied` result records the library's digest.

    The arguments are checked once, here (or not at all when the patch already carries the
    operator's argument dataclass, as a menu item's patch does)."""
    library = default_library() if library is None else library
    checked = _checked(patch, library)
    if isinstance(checked, Invalid):
        return checked
    cls, args = checked
    result = cls().apply(wf, patch.target, args)
    if isinstance(result, Applied):
        return replace(result, library_digest=library.digest)
    return result


def apply_patches(
    workflow: Workflow | str,
    patches: Sequence[Patch],
    *,
    entry: str = "solve",
    step_callees: Sequence[str] = ("llm",),
    path: str | None = None,
    library: OperatorLibrary | None = None,
) -> Result:
    """Apply `patches` in order; the result's diff is against the original source.

    A later patch sees the workflow the earlier one produced (`Applied.workflow`: nothing is
    parsed twice). The first patch that does not apply stops the run; its result says which
    patch it was.
    """
    if isinstance(workflow, str):
        try:
            workflow = parse_workflow(workflow, entry=entry, step_callees=step_callees, path=path)
        except WorkflowError as err:
            return Invalid(Reason.PARSE, str(err))
    library = default_library() if library is None else library
    original, current = workflow, workflow
    if not patches:
        return Applied(original.source, "", original, library.digest)
    result: Result | None = None
    for i, patch in enumerate(patches, 1):
        result = apply_patch(current, patch, library=library)
        if not isinstance(result, Applied):
            if len(patches) > 1:
                result = type(result)(result.reason, f"patch {i}: {result.detail}")
            return result
        current = result.workflow
    if len(patches) == 1:
        return result
    text = diff(original.source, current.source, original.path or "workflow.py")
    for path, after in current.files.items():
        before = original.files.get(path)
        if before is None:
            before = read_sibling(Path(path), {}, path).source
        text += diff(before, after, path)
    return replace(result, diff=text)


def diff(before: str, after: str, path: str = "workflow.py") -> str:
    """Unified diff of two versions of a workflow (empty when they are equal)."""
    return unified_diff(before, after, path)
