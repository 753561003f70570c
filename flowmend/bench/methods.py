"""Benchmark methods as data: a JSON file names a way of running the inner loop on a seed workflow.

Every method is ``repair(seed, task, config)`` under the same per-task budget and the same
models; what differs is the patches applied to the seed before the first run and how many
iterations of the loop follow (0 for the baselines that run a fixed program once). The built-in
methods ship in ``flowmend/bench/methods/*.json``; a user adds one by passing a path
(``--methods b0,./my_method.json``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from flowmend.errors import UserError

SCHEMA = "flowmend.method/1"
MODES = ("structure", "prompt")
BUILTIN = ("b0", "b1", "b2", "b3", "flowmend")

_FIELDS = {"schema", "name", "description", "baseline", "iterations", "proposals", "mode",
           "pre_patches", "program_params"}


@dataclass(frozen=True)
class Method:
    """One way of spending the per-task budget.

    Attributes:
        name: short label used in results, file names and the report (``b0``, ``flowmend``).
        description: one line for the report.
        baseline: whether it is a baseline that flowmend is compared against.
        iterations: loop iterations after the first run of the (pre-patched) seed.
        proposals: patches the optimizer proposes per iteration.
        mode: ``structure`` (all operators) or ``prompt`` (prompt edits only).
        pre_patches: patch JSON objects applied to the seed before iteration 0.
        program_params: default keyword arguments for the program model's calls.
        origin: where the definition came from (``builtin:b0`` or a path).
    """

    name: str
    description: str = ""
    baseline: bool = False
    iterations: int = 0
    proposals: int = 4
    mode: str = "structure"
    pre_patches: tuple[dict, ...] = ()
    program_params: tuple[tuple[str, Any], ...] = ()
    origin: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "description": self.description,
            "baseline": self.baseline,
            "iterations": self.iterations,
            "proposals": self.proposals,
            "mode": self.mode,
            "pre_patches": [dict(p) for p in self.pre_patches],
            "program_params": dict(self.program_params),
        }

    def digest(self) -> str:
        """A hash of what the method does (not of where it was read from), for resume checks."""
        text = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_method(data: Any, *, where: str) -> Method:
    """Validate a method's JSON object; every problem is a `UserError` naming ``where``."""
    if not isinstance(data, dict):
        raise UserError("a method file holds one JSON object", where=where)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise UserError(f"unknown field(s) {', '.join(unknown)}", where=where)
    if data.get("schema", SCHEMA) != SCHEMA:
        raise UserError(f"schema must be {SCHEMA!r}, not {data.get('schema')!r}", where=where)
    name = data.get("name")
    if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise UserError("name must be a non-empty word (letters, digits, - and _)", where=where)
    for key in ("iterations", "proposals"):
        value = data.get(key, 0 if key == "iterations" else 4)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UserError(f"{key} must be a non-negative integer, not {value!r}", where=where)
    if data.get("proposals", 4) < 1:
        raise UserError("proposals must be at least 1", where=where)
    mode = data.get("mode", "structure")
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, not {mode!r}", where=where)
    patches = data.get("pre_patches", [])
    if not isinstance(patches, list):
        raise UserError("pre_patches must be a list of patch objects", where=where)
    for i, patch in enumerate(patches):
        if not isinstance(patch, dict) or not isinstance(patch.get("operator"), str):
            raise UserError(f"pre_patches[{i}] needs an 'operator' name", where=where)
        if not isinstance(patch.get("target", {}), dict) or not isinstance(patch.get("args", {}), dict):
            raise UserError(f"pre_patches[{i}]: target and args must be objects", where=where)
    params = data.get("program_params", {})
    if not isinstance(params, dict):
        raise UserError("program_params must be an object", where=where)
    return Method(
        name=name,
        description=str(data.get("description", "")),
        baseline=bool(data.get("baseline", False)),
        iterations=data.get("iterations", 0),
        proposals=data.get("proposals", 4),
        mode=mode,
        pre_patches=tuple(
            {"schema": "flowmend.patch/1", "operator": p["operator"],
             "target": dict(p.get("target", {})), "args": dict(p.get("args", {}))}
            for p in patches
        ),
        program_params=tuple(sorted(params.items())),
        origin=where,
    )


def load_method(spec: str) -> Method:
    """A built-in method by name (``b0``) or a method file by path (``./my_method.json``)."""
    if spec in BUILTIN:
        text = resources.files("flowmend.bench").joinpath("methods", f"{spec}.json").read_text()
        return parse_method(json.loads(text), where=f"builtin:{spec}")
    path = Path(spec)
    if not (spec.endswith(".json") or "/" in spec):
        raise UserError(
            f"unknown method {spec!r}: use one of {', '.join(BUILTIN)} or a path to a .json file"
        )
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"cannot read method file: {err.strerror}", where=spec) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"not JSON: {err.msg} at line {err.lineno}", where=spec) from None
    return parse_method(data, where=str(path))


def load_methods(specs: str) -> list[Method]:
    """A comma-separated list of methods; names must be unique within a run."""
    methods = [load_method(s.strip()) for s in specs.split(",") if s.strip()]
    if not methods:
        raise UserError("--methods names no method")
    seen: dict[str, str] = {}
    for m in methods:
        if m.name in seen:
            raise UserError(f"two methods are named {m.name!r} ({seen[m.name]} and {m.origin})")
        seen[m.name] = m.origin
    return methods
