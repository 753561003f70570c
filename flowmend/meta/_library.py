"""Evolving the operator library: macro-operators mined from the patch sequences that raised
hidden utility on train, admitted only when they pass the built-ins' gate and help, and
operators that never help deprecated (never deleted).

The miner is ours, not stitch-core's. stitch-core learns lambda-calculus abstractions from a
corpus of programs; what flowmend has to compress is short sequences of typed patches along a
candidate's lineage (two or three edits of one step), where counting contiguous runs of
operator names and turning the arguments that vary into holes is the whole job. stitch-core is
also not installable here (it is not on this machine's package index).

Picture of one generation::

    stored candidates (train) ─ lineages that gained U ─ runs of ≥2 patches on one step
        ─ macro JSON (holes for what varied, examples made by applying it) ─ gate: examples and
        fuzz properties (flowmend ops test) ─ paired evaluation with and without it on
        train-confirm ─ admitted │ rejected (remembered, never proposed again)
"""

from __future__ import annotations

import hashlib
import json
import statistics
import textwrap
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flowmend._files import write_atomically, write_json_atomically
from flowmend.bench.metrics import kappa_of, utility
from flowmend.engine import Applied, OperatorLibrary, default_library, load_library, parse_workflow

GENERATION_SCHEMA = "flowmend.library-generation/1"


@dataclass(frozen=True)
class Run:
    """A run of patches on one step along one improving lineage."""

    ops: tuple[str, ...]
    args: tuple[dict, ...]
    gain: float


def improving_runs(records: Iterable[dict], *, max_len: int = 3) -> list[Run]:
    """Every contiguous run (2 to `max_len` patches) on one step, along the lineage of each
    candidate whose hidden utility beat its seed's."""
    runs = []
    for record in records:
        cands = {(int(c["iteration"]), int(c["index"])): c for c in record.get("candidates", ())}
        seed = cands.get((0, 0))
        if seed is None or utility(seed) is None:
            continue
        for key, c in cands.items():
            if key == (0, 0) or utility(c) is None or utility(c) <= utility(seed):
                continue
            lineage = _lineage(cands, key)
            patches = [cands[k].get("patch") for k in lineage[1:]]
            if not all(isinstance(p, dict) for p in patches):
                continue
            gain = utility(c) - utility(seed)
            for length in range(2, max_len + 1):
                for start in range(0, len(patches) - length + 1):
                    window = patches[start:start + length]
                    steps = {json.dumps(p.get("target"), sort_keys=True) for p in window}
                    if len(steps) == 1 and "step" in (window[0].get("target") or {}):
                        runs.append(Run(tuple(p["op"] for p in window),
                                        tuple(dict(p.get("args") or {}) for p in window), gain))
    return runs


def _lineage(cands: dict, key: tuple[int, int]) -> list[tuple[int, int]]:
    path, seen = [key], {key}
    while True:
        parent = cands[path[-1]].get("parent")
        if parent is None:
            break
        parent = (int(parent[0]), int(parent[1]))
        if parent in seen or parent not in cands:
            break
        path.append(parent)
        seen.add(parent)
    return path[::-1]


def propose_macros(records: Iterable[dict], *, min_count: int = 2, max_len: int = 3,
                   known: Iterable[str] = (), limit: int = 5) -> list[dict]:
    """Macro definitions (``flowmend.macro/1``) for the runs seen at least `min_count` times,
    best first (count × mean gain), skipping any whose digest is in `known` (rejected or
    admitted before)."""
    groups: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    for run in improving_runs(records, max_len=max_len):
        groups[run.ops].append(run)
    ranked = sorted(((len(rs) * statistics.fmean(r.gain for r in rs), ops, rs)
                     for ops, rs in groups.items() if len(rs) >= min_count),
                    key=lambda x: (-x[0], x[1]))
    known = set(known)
    out = []
    for _, ops, rs in ranked:
        macro = _macro(ops, rs)
        if macro is None or macro_digest(macro) in known:
            continue
        out.append(macro)
        if len(out) >= limit:
            break
    return out


def macro_digest(macro: dict) -> str:
    """What a macro does (its sequence and parameters), not its name or examples."""
    core = {"sequence": macro["sequence"], "params": macro["params"]}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]


def _macro(ops: tuple[str, ...], runs: list[Run]) -> dict | None:
    library = default_library()
    sequence, params = [], {}
    for i, op in enumerate(ops):
        cls = library.get(op)
        if cls is None:
            return None
        template = {}
        names = sorted({k for r in runs for k in r.args[i]})
        for arg in names:
            values = [json.dumps(r.args[i].get(arg), sort_keys=True) for r in runs]
            common, _ = Counter(values).most_common(1)[0]
            if len(set(values)) == 1:
                template[arg] = json.loads(common)
                continue
            hole = arg if arg not in params else f"{arg}_{i + 1}"
            params[hole] = {"fills": f"{op}.{arg}", "default": json.loads(common),
                            "doc": f"{op}'s {arg} (the most common value on train is the "
                                   "default)"}
            template[arg] = f"${hole}"
        sequence.append({"op": op, "args": template})
    gains = [r.gain for r in runs]
    macro = {
        "schema": "flowmend.macro/1",
        "name": "-then-".join(ops),
        "version": 1,
        "description": (f"On one step: {', then '.join(ops)} (mined: raised hidden utility "
                        f"{len(runs)} times on train, mean gain {statistics.fmean(gains):.2f})."),
        "params": params,
        "sequence": sequence,
    }
    example = _example(macro, library)
    if example is None:
        return None  # it applies to none of the built-ins' examples: it could not be tested
    macro["examples"] = [example]
    return macro


def _example(macro: dict, library: OperatorLibrary) -> dict | None:
    """An example made by applying the macro to the first built-in example it applies to."""
    from flowmend.operators._macro import macro_operator

    cls = macro_operator(macro, where=macro["name"])
    op = cls()
    befores = [textwrap.dedent(c.before) for name in library.names()
               for c in library.get(name).EXAMPLES]
    for before in dict.fromkeys(befores):
        try:
            wf = parse_workflow(before)
        except Exception:  # noqa: BLE001 - an example in another convention: try the next
            continue
        for site in op.sites(wf):
            result = op.apply(wf, site, {})
            if isinstance(result, Applied):
                return {"before": before, "args": {}, "after": result.source,
                        "target": site}
    return None


@dataclass(frozen=True)
class Decision:
    """Whether a macro joined the library, and the evidence.

    Attributes:
        digest, name: the macro.
        gate: what failed of its examples and fuzz properties (empty: passed).
        n: train-confirm tasks it was evaluated on, paired with the library without it.
        delta: mean hidden utility with it minus without it.
        kappa_with, kappa_without: κ with and without it on those tasks.
        admitted: the verdict.
    """

    digest: str
    name: str
    gate: tuple[str, ...]
    n: int
    delta: float | None
    kappa_with: float | None
    kappa_without: float | None
    admitted: bool

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "gate": list(self.gate)}


def gate(path: Path, *, fuzz_examples: int = 20, seed: int = 0) -> list[str]:
    """What `flowmend ops test` finds wrong with the macro in `path` (empty: it passes)."""
    from flowmend.engine import LibraryError
    from flowmend.operators import check_library

    try:
        library = load_library([str(path)])
    except LibraryError as err:
        return [str(err)]
    return [f"{f.case}: {f.detail}" for f in
            check_library(library, fuzz_examples=fuzz_examples, seed=seed)]


class LibraryEvolution:
    """A study's library generations in ``<out>/library/``: admitted macros, the decisions
    taken (every one, so nothing rejected is proposed again) and one manifest a generation."""

    def __init__(self, out: Path):
        self.root = Path(out) / "library"
        self.root.mkdir(parents=True, exist_ok=True)

    def decisions(self) -> list[dict]:
        path = self.root / "decisions.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _record(self, decision: Decision) -> None:
        rows = self.decisions() + [decision.to_json()]
        write_atomically(self.root / "decisions.jsonl",
                         "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))

    def generations(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.root.glob("generation-*.json"))]

    def current(self) -> OperatorLibrary:
        gens = self.generations()
        return load_library(gens[-1]["specs"]) if gens else default_library()

    def evolve(self, records: Sequence[dict], *, evaluate, setup, tasks: Sequence[Any],
               min_count: int = 2, limit: int = 5, fuzz_examples: int = 20,
               prune: bool = False, seed: int = 0) -> dict:
        """One generation: propose macros from `records`, gate and evaluate each against the
        current library on `tasks` (``evaluate(setup, tasks) -> records``), admit those that
        help, optionally deprecate operators whose leave-one-out ablation never hurts, and
        write ``generation-N.json``; returns it."""
        base_library = self.current()
        base_setup = replace(setup, config=replace(setup.config, library=base_library))
        base_records = evaluate(base_setup, tasks)
        known = [d["digest"] for d in self.decisions()]
        specs = list(base_library.specs)
        admitted = []
        for macro in propose_macros(records, min_count=min_count, known=known, limit=limit):
            digest = macro_digest(macro)
            path = self.root / f"{macro['name']}.json"
            write_json_atomically(path, macro)
            failed = gate(path, fuzz_examples=fuzz_examples, seed=seed)
            if failed:
                self._record(Decision(digest, macro["name"], tuple(failed), 0, None, None, None,
                                      False))
                path.unlink()
                continue
            library = load_library(specs + [str(path.resolve())])
            with_setup = replace(setup, config=replace(setup.config, library=library))
            with_records = evaluate(with_setup, tasks)
            delta = statistics.fmean(utility(a) - utility(b)
                                     for a, b in zip(with_records, base_records))
            k_with, k_without = kappa_of(with_records).value, kappa_of(base_records).value
            helps = delta > 0 or (k_with is not None and k_without is not None
                                  and k_with > k_without)
            self._record(Decision(digest, macro["name"], (), len(tasks), delta, k_with,
                                  k_without, helps))
            if helps:
                specs.append(str(path.resolve()))
                admitted.append(macro["name"])
            else:
                path.unlink()
        library = load_library(specs)
        deprecated = self._prune(library, setup, tasks, evaluate) if prune else []
        number = len(self.generations()) + 1
        generation = {"schema": GENERATION_SCHEMA, "generation": number,
                      "parent": base_library.digest, "digest": library.digest,
                      "specs": specs, "admitted": admitted, "deprecated": deprecated}
        write_json_atomically(self.root / f"generation-{number}.json", generation)
        return generation

    def _prune(self, library: OperatorLibrary, setup, tasks, evaluate) -> list[dict]:
        """Leave-one-out: an operator whose removal never lowers any task's utility never
        helped on these tasks; it is deprecated (listed, kept in the library)."""
        full = evaluate(replace(setup, config=replace(setup.config, library=library)), tasks)
        out = []
        for name in library.names():
            without = evaluate(replace(setup, config=replace(
                setup.config, library=library.without(name))), tasks)
            drops = [utility(a) - utility(b) for a, b in zip(full, without)]
            if all(d <= 0 for d in drops):
                out.append({"operator": name, "n": len(drops),
                            "delta_without": statistics.fmean(-d for d in drops)})
        return out
