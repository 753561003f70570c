"""Macro-operators defined as data (``flowmend.macro/1``): a named, parameterised sequence of
built-in operators applied to one step, with holes its arguments fill.

A macro is JSON, so the meta loop can write one (mined from the patch sequences that helped on
train) and a person can read it::

    {"schema": "flowmend.macro/1", "name": "verify-then-retry", "version": 1,
     "description": "Check a step's code with verify, then retry it until verify passes.",
     "params": {"attempts": {"fills": "wrap-in-retry.max_attempts", "default": 3,
                             "doc": "How many times the step may run."}},
     "sequence": [{"op": "insert-verify-step", "args": {}},
                  {"op": "wrap-in-retry", "args": {"max_attempts": "$attempts",
                                                   "until": "verify"}}],
     "examples": [{"before": "...", "args": {"attempts": 2}, "after": "..."}]}

Every element applies at the macro's target step (``{"step": ...}``), one after the other.
The arguments are a frozen dataclass built from ``params``. Each parameter takes its type and
bounds from the built-in argument it ``fills``, so the menu, the schema and the checks treat a
macro like any operator. The library loader builds it when a ``.json`` spec names this
schema, and the same gate as the built-ins admits it (its examples and the fuzz properties:
`flowmend ops test`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

from flowmend.engine._library import LibraryError, default_library
from flowmend.engine._operator import Applied, Case, Operator, Reason, Refusal, check_bounds
from flowmend.engine._args import type_hints
from flowmend.engine._workflow import Workflow

MACRO_SCHEMA = "flowmend.macro/1"
_FIELDS = {"schema", "name", "version", "description", "params", "sequence", "examples",
           "not_applicable"}
_HOLE = re.compile(r"^\$([a-z_][a-z0-9_]*)$")


def load(data: dict, where: str) -> list[type[Operator]]:
    """The operator class a ``flowmend.macro/1`` object defines (the library loader's hook);
    `LibraryError` names what is wrong in one line."""
    return [macro_operator(data, where=where)]


def macro_operator(data: dict, *, where: str = "macro") -> type[Operator]:
    primitives = default_library()
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise LibraryError(f"unknown field(s) {', '.join(unknown)}", where=where)
    name, description = data.get("name"), data.get("description")
    sequence = data.get("sequence")
    if not isinstance(sequence, list) or len(sequence) < 2:
        raise LibraryError("a macro's sequence lists at least two operators", where=where)
    steps: list[tuple[type[Operator], dict]] = []
    for i, element in enumerate(sequence):
        cls = primitives.get(element.get("op")) if isinstance(element, dict) else None
        if cls is None:
            raise LibraryError(f"sequence[{i}] names no built-in operator", where=where)
        args = element.get("args", {})
        if not isinstance(args, dict):
            raise LibraryError(f"sequence[{i}].args must be an object", where=where)
        steps.append((cls, dict(args)))
    fields = []
    for pname, spec in (data.get("params") or {}).items():
        if not isinstance(spec, dict) or not _HOLE.match(f"${pname}"):
            raise LibraryError(f"param {pname!r} must be a snake_case name with an object",
                               where=where)
        op_name, _, arg = str(spec.get("fills", "")).partition(".")
        cls = primitives.get(op_name)
        hints = type_hints(cls.Args) if cls else {}
        if arg not in hints:
            raise LibraryError(f"param {pname!r} fills no built-in argument "
                               f"({spec.get('fills')!r})", where=where)
        fields.append((pname, hints[arg], dataclasses.field(
            default=spec.get("default"), metadata={"doc": str(spec.get("doc", ""))})))
    holes = {m.group(1) for _, args in steps for v in args.values()
             if isinstance(v, str) and (m := _HOLE.match(v))}
    missing = sorted(holes - {f[0] for f in fields})
    if missing:
        raise LibraryError(f"hole(s) {', '.join('$' + h for h in missing)} name no param",
                           where=where)
    camel = "".join(part.title() for part in str(name).split("-")) or "Macro"
    args_cls = dataclasses.make_dataclass(
        f"{camel}Args", fields, frozen=True,
        namespace={"__post_init__": lambda self: check_bounds(self)})
    type_hints(args_cls)
    kind = "structure" if any(c.kind == "structure" for c, _ in steps) else "prompt"
    return type(camel, (MacroOperator,), {
        "name": name, "kind": kind, "VERSION": data.get("version", 1), "Args": args_cls,
        "DESCRIPTION": description, "SEQUENCE": tuple(steps),
        "EXAMPLES": [_case(c, where) for c in data.get("examples") or []],
        "NOT_APPLICABLE": [_case(c, where) for c in data.get("not_applicable") or []],
        "__module__": __name__,
    })


def _case(data: Any, where: str) -> Case:
    if not isinstance(data, dict) or "before" not in data:
        raise LibraryError("an example is an object with before, args and after", where=where)
    return Case(before=data["before"], args=dict(data.get("args") or {}),
                after=data.get("after"), target=data.get("target"))


class MacroOperator(Operator):
    """The behaviour every macro shares: its sites are its first operator's step sites, and
    applying it applies each operator of its sequence at that step in turn. One that does not
    apply, halfway, refuses the whole macro."""

    SEQUENCE: tuple[tuple[type[Operator], dict], ...] = ()

    def sites(self, wf: Workflow) -> list[dict]:
        first = self.SEQUENCE[0][0]()
        return [t for t in first.sites(wf) if set(t) == {"step"}]

    def _filled(self, args: Any, template: dict) -> dict:
        out = {}
        for key, value in template.items():
            hole = _HOLE.match(value) if isinstance(value, str) else None
            out[key] = getattr(args, hole.group(1)) if hole else value
        return out

    def _chain(self, wf: Workflow, target: dict, args: Any) -> list[Workflow]:
        """The workflow before each element and after the last."""
        chain = [wf]
        for cls, template in self.SEQUENCE:
            result = cls().apply(chain[-1], dict(target), self._filled(args, template))
            if not isinstance(result, Applied):
                raise Refusal(Reason.PRECONDITION,
                              f"{self.name}: {cls.name} does not apply after the steps before "
                              f"it ({result.detail})")
            chain.append(result.workflow)
        return chain

    def transform(self, wf: Workflow, target: dict, args: Any) -> str:
        return self._chain(wf, target, args)[-1].source

    def edit_region(self, wf: Workflow, target: dict, args: Any) -> list[tuple[int, int]]:
        """Each element's own region, carried back to `wf`'s lines: a line an earlier element
        left alone maps to where it was; one it wrote maps to that element's region."""
        chain = self._chain(wf, target, args)
        regions: list[tuple[int, int]] = []
        back = list(range(1, len(wf.source.splitlines()) + 2))  # line in chain[k] → line in wf
        for k, (cls, template) in enumerate(self.SEQUENCE):
            before, after = chain[k], chain[k + 1]
            own = cls().edit_region(before, dict(target), self._filled(args, template))
            for lo, hi in own:
                mapped = [back[line - 1] for line in range(lo, hi + 1)
                          if 0 < line <= len(back)]
                regions.append((min(mapped), max(mapped)) if mapped else (1, 1))
            back = _carry(back, before.source, after.source, own)
        return regions


def _carry(back: list[int], old: str, new: str, own: list[tuple[int, int]]) -> list[int]:
    """`back` for the lines of `new`: unchanged lines keep their origin; a written line takes
    the origin of the first line of the region that wrote it."""
    a, b = old.splitlines(), new.splitlines()
    out = [0] * (len(b) + 1)
    fallback = back[own[0][0] - 1] if own and 0 < own[0][0] <= len(back) else 1
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        for j in range(j1, j2):
            out[j] = back[i1 + (j - j1)] if tag == "equal" else fallback
    out[len(b)] = back[-1]
    return out


def to_json(cls: type[MacroOperator], examples: list[dict] | None = None) -> dict:
    """The ``flowmend.macro/1`` object of a macro class (its examples, or `examples`)."""
    params = {}
    for f in dataclasses.fields(cls.Args):
        params[f.name] = {"default": f.default, "doc": f.metadata.get("doc", ""),
                          "fills": _fills(cls, f.name)}
    return {
        "schema": MACRO_SCHEMA, "name": cls.name, "version": cls.VERSION,
        "description": cls.DESCRIPTION, "params": params,
        "sequence": [{"op": c.name, "args": dict(t)} for c, t in cls.SEQUENCE],
        "examples": examples if examples is not None else [
            {"before": c.before, "args": c.args, "after": c.after} for c in cls.EXAMPLES],
        "not_applicable": [{"before": c.before, "args": c.args} for c in cls.NOT_APPLICABLE],
    }


def _fills(cls, pname: str) -> str:
    for op, template in cls.SEQUENCE:
        for key, value in template.items():
            if value == f"${pname}":
                return f"{op.name}.{key}"
    return ""
