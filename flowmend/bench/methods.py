"""Benchmark methods as data: a JSON file names a `RepairConfig` to run on a seed workflow.

Every method is ``repair(seed, task, config)`` under the same per-task budget and the same
models; what differs is the config: the patches applied to the seed before the first run, how
many iterations of the loop follow (0 for the baselines that run a fixed program once), the
mode, and anything else a `RepairConfig` holds, and the strategy that spends the budget (the
inner loop, or a baseline made of several runs: `flowmend.bench._strategies`). The built-in
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

from flowmend.bench._strategies import STRATEGIES
from flowmend.engine import RepairConfig
from flowmend.errors import UserError

METHOD_SCHEMA = "flowmend.method/2"
# Version 1 listed the loop's fields flat beside the name; its files still read.
_METHOD_SCHEMA_V1 = "flowmend.method/1"
BUILTIN = ("b0", "b1", "b2", "b3", "b4", "flowmend", "flowmend-random", "oracle-select")

_FIELDS = {"schema", "name", "description", "baseline", "config", "strategy"}
_V1_CONFIG = ("iterations", "proposals", "mode", "pre_patches", "program_params")


@dataclass(frozen=True)
class Method:
    """One way of spending the per-task budget: a named `RepairConfig`.

    The bench runs every method under the run's budget and rng seed (``--budget-*``,
    ``--seed``), which replace the config's own.

    Attributes:
        name: short label used in results, file names and the report (``b0``, ``flowmend``).
        description: one line for the report.
        baseline: whether it is a baseline that flowmend is compared against.
        config: the repair it runs (iterations, proposals, mode, pre-patches, ...).
        origin: where the definition came from (``builtin:b0`` or a path).
        strategy: ``repair`` (the inner loop with this config), ``best-of-n``, ``self-repair``
            or ``oracle-select`` (see `flowmend.bench._strategies`).
        seed_label, seed_source: the method's own seed workflow (a learned set-up's,
            `flowmend bench --setup`); None runs the run's ``--seed-workflow``.
    """

    name: str
    description: str = ""
    baseline: bool = False
    config: RepairConfig = field(default_factory=lambda: RepairConfig(iterations=0))
    origin: str = field(default="", compare=False)
    strategy: str = "repair"
    seed_label: str | None = None
    seed_source: str | None = None

    def to_json(self) -> dict[str, Any]:
        # The defaults are left out: the identity of runs made before they existed stays.
        strategy = {} if self.strategy == "repair" else {"strategy": self.strategy}
        seed = {} if self.seed_source is None else {
            "seed_workflow": self.seed_label,
            "seed_workflow_sha256": hashlib.sha256(self.seed_source.encode()).hexdigest()[:16]}
        return {
            "schema": METHOD_SCHEMA,
            "name": self.name,
            "description": self.description,
            "baseline": self.baseline,
            **strategy,
            **seed,
            "config": self.config.to_json(),
        }

    def digest(self) -> str:
        """A hash of what the method does (not of where it was read from), for resume checks."""
        text = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_method(data: Any, *, where: str) -> Method:
    """Validate a method's JSON object; every problem is a `UserError` naming ``where``.

    A ``flowmend.method/2`` object nests a repair config (`RepairConfig.from_json`; missing
    fields keep their defaults, iterations 0); a ``flowmend.method/1`` object lists
    iterations, proposals, mode, pre_patches and program_params beside the name.
    """
    if not isinstance(data, dict):
        raise UserError("a method file holds one JSON object", where=where)
    schema = data.get("schema", METHOD_SCHEMA)
    if schema not in (METHOD_SCHEMA, _METHOD_SCHEMA_V1):
        raise UserError(f"schema must be {METHOD_SCHEMA!r}, not {schema!r}", where=where)
    allowed = _FIELDS if schema == METHOD_SCHEMA else (_FIELDS - {"config"}) | set(_V1_CONFIG)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(f"unknown field(s) {', '.join(unknown)}", where=where)
    name = data.get("name")
    if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise UserError("name must be a non-empty word (letters, digits, - and _)", where=where)
    if schema == METHOD_SCHEMA:
        config = data.get("config", {})
    else:
        config = {k: data[k] for k in _V1_CONFIG if k in data}
    if not isinstance(config, dict):
        raise UserError("config must be an object", where=where)
    strategy = data.get("strategy", "repair")
    if strategy not in STRATEGIES:
        raise UserError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}",
                        where=where)
    try:
        repair_config = RepairConfig.from_json({"iterations": 0, **config})
    except ValueError as err:
        raise UserError(str(err), where=where) from None
    return Method(
        name=name,
        description=str(data.get("description", "")),
        baseline=bool(data.get("baseline", False)),
        config=repair_config,
        origin=where,
        strategy=strategy,
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
