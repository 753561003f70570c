"""What the benchmark measures, computed from the records of ``results.jsonl``.

Pure functions of the records: pass@1 on hidden tests, success under budget, mean calls,
tokens and cost per task and per solved task, the verifier's alignment γ, the optimizer's
proposal quality κ, patch sizes, the share of proposals that applied, and paired bootstrap
confidence intervals of pass@1 differences. Every figure carries the sample size it rests on.
"""

from __future__ import annotations

import difflib
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import libcst as cst

from flowmend.verifier import Estimate, Iteration, Scored, gamma, kappa, score_ties

# Formatting nodes are not part of the program's structure: a patch that only re-indents or
# re-spaces changes no AST node.
_FORMATTING = (
    cst.BaseParenthesizableWhitespace,
    cst.EmptyLine,
    cst.Newline,
    cst.TrailingWhitespace,
    cst.Comment,
    cst.Semicolon,
    cst.Comma,
    cst.Colon,
    cst.Dot,
    cst.LeftParen,
    cst.RightParen,
    cst.LeftSquareBracket,
    cst.RightSquareBracket,
    cst.LeftCurlyBrace,
    cst.RightCurlyBrace,
    cst.ImportStar,
    cst.AssignEqual,
    cst.AssignTarget,
)


# κ counts an iteration when some proposal beats the incumbent's hidden utility by at least Δ:
# any strict improvement (one more hidden test passed), not a tie.
KAPPA_DELTA = 1e-9
# The method whose spend the others are held to, and how far they may stray from it.
SPEND_REFERENCE = "flowmend"
SPEND_TOLERANCE = 0.15


@dataclass(frozen=True)
class Figure:
    """A figure with the sample it rests on and, where computed, its 95% interval; ``value``
    is None when ``n`` is 0."""

    value: float | None
    n: int
    lo: float | None = None
    hi: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "n": self.n, "lo": self.lo, "hi": self.hi}


def _mean(values: Sequence[float]) -> Figure:
    return Figure(sum(values) / len(values) if values else None, len(values))


# ---------------------------------------------------------------- patch size


def _structural_children(node: cst.CSTNode) -> list[cst.CSTNode]:
    return [c for c in node.children if not isinstance(c, _FORMATTING)]


def _size(node: cst.CSTNode) -> int:
    return 1 + sum(_size(c) for c in _structural_children(node))


def _leaf_value(node: cst.CSTNode) -> Any:
    # Leaves such as Name, Integer, SimpleString and operators carry their meaning in fields.
    return getattr(node, "value", type(node).__name__)


def _diff(a: cst.CSTNode, b: cst.CSTNode, code) -> int:
    if type(a) is not type(b):
        return _size(a) + _size(b)
    if a.deep_equals(b):
        return 0
    ca, cb = _structural_children(a), _structural_children(b)
    if not ca and not cb:
        return 0 if _leaf_value(a) == _leaf_value(b) else 2
    keys_a, keys_b = [code(c) for c in ca], [code(c) for c in cb]
    changed = 0
    matcher = difflib.SequenceMatcher(a=keys_a, b=keys_b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        left, right = ca[i1:i2], cb[j1:j2]
        for x, y in zip(left, right):
            changed += _diff(x, y, code)
        changed += sum(_size(x) for x in left[len(right):])
        changed += sum(_size(y) for y in right[len(left):])
    return changed


def patch_size(parent_source: str, child_source: str) -> int | None:
    """AST nodes changed between two programs: nodes removed plus nodes added.

    Both sources are parsed with libcst; formatting nodes (whitespace, comments, commas and
    brackets) are ignored. Matching is top-down: identical subtrees cost 0, a node of another
    type replaces the whole subtree (its size on both sides), a node of the same type is
    compared child by child after aligning the children's code with a longest-common-
    subsequence match, and a changed leaf (a name, a literal) counts 2 (one out, one in). A
    prompt edit therefore costs 2, wrapping a call in a retry loop costs the nodes of the loop.
    None when either side does not parse.
    """
    try:
        a, b = cst.parse_module(parent_source), cst.parse_module(child_source)
    except cst.ParserSyntaxError:
        return None
    cache: dict[int, str] = {}

    def code(node: cst.CSTNode) -> str:
        key = id(node)
        if key not in cache:
            cache[key] = type(node).__name__ + ":" + cst.Module(body=[]).code_for_node(node).strip()
        return cache[key]

    return _diff(a, b, code)


# ---------------------------------------------------------------- gamma and kappa


def utility(candidate: dict) -> float | None:
    """A candidate's (or record's) hidden utility U for γ, κ and regret: the share of hidden
    tests that are not visible checks (``utility``); records written before it was kept
    have only the share of all hidden tests (``hidden``)."""
    u = candidate.get("utility", candidate.get("hidden"))
    return None if u is None else float(u)


def _scored(records: Iterable[dict], *, per_iteration: bool) -> list[Scored]:
    out = []
    for r in records:
        for c in r.get("candidates", ()):
            u = utility(c)
            if c.get("score") is None or u is None:
                continue
            group = f"{r['task_id']}|{r['method']}"
            if per_iteration:
                group += f"|{int(c.get('iteration', 0))}"
            out.append(Scored(float(c["score"]), u, group))
    return out


def gamma_of(records: Iterable[dict], *, per_iteration: bool = True) -> Figure:
    """γ (`flowmend.verifier.gamma`) as defined: over pairs of candidates of one iteration of
    one (task, method) run, the choices the loop's selection faced, compared by the score it
    ranked them with. ``per_iteration=False`` pools every pair of the run (iteration 0's seed
    with iteration 3's proposals too)."""
    return _figure(gamma(_scored(records, per_iteration=per_iteration)))


def score_ties_of(records: Iterable[dict], *, per_iteration: bool = True) -> Figure:
    """The share of γ's pairs whose scores tie (each counts as a disagreement in γ)."""
    return _figure(score_ties(_scored(records, per_iteration=per_iteration)))


def kappa_iterations(record: dict) -> list[tuple[int, float, tuple[float, ...]]]:
    """``(iteration, U(incumbent), U of each executed proposal)`` for every loop iteration
    k ≥ 1 that had budget to propose (`kappa_rounds`)."""
    return kappa_rounds(record)[0]


def kappa_rounds(record: dict) -> tuple[list[tuple[int, float, tuple[float, ...]]], int]:
    """κ's iterations of one record, and how many iterations the budget cut.

    The iterations are the record's ``rounds`` (what each loop iteration came to, the ones
    with no candidate included) and those its candidates name. An iteration counts when it had
    budget to propose: one whose proposals all failed to apply, or whose menu was empty, has
    no proposals and counts as one that found nothing. One whose optimizer call the budget
    refused (``budget_cut``) is not counted but tallied apart. The incumbent of iteration k is
    iteration k's candidate 0 when the loop recorded it, else the last candidate selected
    before k (the pre-patched seed until a proposal wins). Iterations whose incumbent already
    has U = 1 cannot improve and are left out.
    """
    by_iter: dict[int, list[dict]] = defaultdict(list)
    for c in record.get("candidates", ()):
        by_iter[int(c.get("iteration", 0))].append(c)
    cut_at = {int(r["iteration"]): bool(r.get("budget_cut")) for r in record.get("rounds") or ()}
    out = []
    cut = 0
    incumbent: float | None = None
    for k in sorted(set(by_iter) | set(cut_at)):
        first = next((c for c in by_iter[k] if c.get("index", 0) == 0), None)
        if first is not None and utility(first) is not None:
            incumbent = utility(first)
        proposals = tuple(utility(c) for c in by_iter[k]
                          if c.get("index", 0) != 0 and utility(c) is not None)
        if k > 0 and incumbent is not None and incumbent < 1.0:
            if cut_at.get(k) and not proposals:
                cut += 1
            else:
                out.append((k, incumbent, proposals))
        chosen = next((c for c in by_iter[k] if c.get("selected") and c.get("index", 0) != 0
                       and utility(c) is not None), None)
        if chosen is not None:
            incumbent = utility(chosen)
    return out, cut


def budget_cut_iterations(records: Iterable[dict]) -> int:
    """Iterations whose proposals the budget refused, over the records (not in κ's n)."""
    return sum(kappa_rounds(r)[1] for r in records)


def regret(record: dict) -> float | None:
    """``U(best candidate) − U(selected)``: what selection left on the table in one run; the
    selected answer is the record's final output. None when no candidate has a utility."""
    found = [u for u in (utility(c) for c in record.get("candidates", ())) if u is not None]
    final = utility(record)
    if not found or final is None:
        return None
    return max(found) - final


def kappa_by_task(records: Iterable[dict], delta: float = KAPPA_DELTA) -> dict[str, float]:
    """Per task, the share of its counted iterations that found an improvement (tasks with
    none left out): the unit a paired comparison of two methods' κ resamples."""
    out = {}
    for r in records:
        found = kappa([Iteration(u0, us) for _, u0, us in kappa_iterations(r)], delta)
        if found.n:
            out[r["task_id"]] = found.value
    return out


def kappa_paired(a: Sequence[dict], b: Sequence[dict], *, resamples: int = 10_000,
                 seed: int = 0) -> Figure:
    """κ(a) − κ(b), paired over the tasks where both counted an iteration: the mean per-task
    difference, with a percentile 95% interval from a paired bootstrap. n = tasks."""
    ka, kb = kappa_by_task(a), kappa_by_task(b)
    common = sorted(set(ka) & set(kb))
    return paired_bootstrap([ka[t] for t in common], [kb[t] for t in common],
                            resamples=resamples, seed=seed)


def kappa_of(records: Iterable[dict], delta: float = KAPPA_DELTA) -> Figure:
    """κ (`flowmend.verifier.kappa`) over every loop iteration of the records."""
    return _figure(kappa(_iterations(records), delta))


def kappa_by_iteration(records: Iterable[dict], delta: float = KAPPA_DELTA) -> dict[int, Figure]:
    """κ at each iteration number, for the γ/κ plot."""
    by_k: dict[int, list[Iteration]] = defaultdict(list)
    for r in records:
        for k, u0, us in kappa_iterations(r):
            by_k[k].append(Iteration(u0, us))
    return {k: _figure(kappa(its, delta)) for k, its in sorted(by_k.items())}


def _iterations(records: Iterable[dict]) -> list[Iteration]:
    return [Iteration(u0, us) for r in records for _, u0, us in kappa_iterations(r)]


def _figure(found: Estimate) -> Figure:
    """The verifier's estimate (NaN when empty) as a figure (None when empty)."""
    return Figure(None if math.isnan(found.value) else found.value, found.n)


# ---------------------------------------------------------------- bootstrap


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000, seed: int = 0
) -> Figure:
    """Mean of ``a − b`` over paired tasks with a percentile 95% interval (seeded numpy)."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    n = len(a)
    if n == 0:
        return Figure(None, 0)
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)  # bound memory: resample in blocks
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return Figure(float(d.mean()), n, float(lo), float(hi))


def wilson(successes: int, n: int, z: float = 1.959964) -> Figure:
    """A proportion with its Wilson 95% interval (sound at 0 and n, unlike the normal one)."""
    if n == 0:
        return Figure(None, 0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Figure(p, n, max(0.0, centre - half), min(1.0, centre + half))


# ---------------------------------------------------------------- per-method summary


@dataclass(frozen=True)
class MethodSummary:
    method: str
    baseline: bool
    pass_at_1: Figure
    success_under_budget: Figure
    errors: int
    iterations: Figure
    calls: Figure
    tokens: Figure
    cost: Figure
    wall_s: Figure
    calls_per_solved: Figure
    tokens_per_solved: Figure
    cost_per_solved: Figure
    gamma: Figure
    kappa: Figure
    patch_size: Figure
    applied_share: Figure
    vs_best_baseline: Figure | None = None
    extra: dict = field(default_factory=dict)
    gamma_pooled: Figure = Figure(None, 0)
    score_ties: Figure = Figure(None, 0)
    kappa_budget_cut: int = 0
    regret: Figure = Figure(None, 0)
    # Mean tokens per task over the reference method's (flowmend's), paired over common tasks.
    spend_ratio: Figure | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "baseline": self.baseline,
                               "errors": self.errors, "kappa_budget_cut": self.kappa_budget_cut}
        for name in ("pass_at_1", "success_under_budget", "iterations", "calls", "tokens",
                     "cost", "wall_s", "calls_per_solved", "tokens_per_solved",
                     "cost_per_solved", "gamma", "gamma_pooled", "score_ties", "kappa",
                     "regret", "patch_size", "applied_share"):
            out[name] = getattr(self, name).to_json()
        for name in ("vs_best_baseline", "spend_ratio"):
            value = getattr(self, name)
            out[name] = value.to_json() if value else None
        return out

    @property
    def spend_matched(self) -> bool | None:
        """Whether the mean spend is within `SPEND_TOLERANCE` of the reference method's."""
        if self.spend_ratio is None or self.spend_ratio.value is None:
            return None
        return abs(self.spend_ratio.value - 1.0) <= SPEND_TOLERANCE


def within_budget(record: dict) -> bool:
    """Whether the record's spending stayed under every cap of its budget."""
    budget = record.get("budget") or {}
    for key, spent in (("calls", record.get("calls", 0)), ("tokens", record.get("tokens", 0)),
                       ("cost", record.get("cost", 0.0)), ("wall_s", record.get("wall_s", 0.0))):
        cap = budget.get(key)
        if cap is not None and spent is not None and spent > cap:
            return False
    return True


def summarize_method(name: str, records: Sequence[dict], *, baseline: bool = False) -> MethodSummary:
    n = len(records)
    solved = [r for r in records if r.get("passed")]
    sizes = [c["patch_size"] for r in records for c in r.get("candidates", ())
             if c.get("patch_size") is not None and c.get("index", 0) != 0]
    tried = sum((r.get("proposals") or {}).get("tried", 0) for r in records)
    applied = sum((r.get("proposals") or {}).get("applied", 0) for r in records)

    def per(key: str, rows: Sequence[dict]) -> Figure:
        return _mean([float(r.get(key) or 0) for r in rows])

    return MethodSummary(
        method=name,
        baseline=baseline,
        pass_at_1=wilson(len(solved), n),
        success_under_budget=wilson(sum(1 for r in solved if within_budget(r)), n),
        errors=sum(1 for r in records if r.get("status") == "error"),
        iterations=per("iterations", records),
        calls=per("calls", records),
        tokens=per("tokens", records),
        cost=per("cost", records),
        wall_s=per("wall_s", records),
        calls_per_solved=per("calls", solved),
        tokens_per_solved=per("tokens", solved),
        cost_per_solved=per("cost", solved),
        gamma=gamma_of(records),
        kappa=kappa_of(records),
        patch_size=_mean(sizes),
        applied_share=Figure(applied / tried if tried else None, tried),
        gamma_pooled=gamma_of(records, per_iteration=False),
        score_ties=score_ties_of(records),
        kappa_budget_cut=budget_cut_iterations(records),
        regret=_mean([g for g in map(regret, records) if g is not None]),
    )


def summarize(
    records: Sequence[dict], *, baselines: Iterable[str] = (), resamples: int = 10_000,
    seed: int = 0,
) -> list[MethodSummary]:
    """One summary per method, in first-seen order, with bootstrap CIs against the best baseline.

    The best baseline is the baseline method with the highest pass@1 (the first on ties). Each
    other method's difference is paired over the tasks both ran.
    """
    baselines = set(baselines)
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["method"], []).append(r)
    summaries = [summarize_method(m, rows, baseline=m in baselines) for m, rows in groups.items()]
    if SPEND_REFERENCE in groups:
        summaries = [replace(s, spend_ratio=spend_ratio(groups[s.method], groups[SPEND_REFERENCE]))
                     for s in summaries]
    best = best_baseline(summaries)
    if best is None:
        return summaries
    base = {r["task_id"]: float(bool(r.get("passed"))) for r in groups[best.method]}
    out = []
    for s in summaries:
        if s.method != best.method:
            mine = {r["task_id"]: float(bool(r.get("passed"))) for r in groups[s.method]}
            common = sorted(set(mine) & set(base))
            ci = paired_bootstrap([mine[t] for t in common], [base[t] for t in common],
                                  resamples=resamples, seed=seed)
            s = replace(s, vs_best_baseline=ci)
        out.append(s)
    return out


def spend_ratio(records: Sequence[dict], reference: Sequence[dict]) -> Figure:
    """Mean tokens per task of ``records`` over those of ``reference``, on the tasks both ran
    (n = tasks); None when the reference spent nothing."""
    mine = {r["task_id"]: float(r.get("tokens") or 0) for r in records}
    theirs = {r["task_id"]: float(r.get("tokens") or 0) for r in reference}
    common = sorted(set(mine) & set(theirs))
    total = sum(theirs[t] for t in common)
    return Figure(sum(mine[t] for t in common) / total if total else None, len(common))


def best_baseline(summaries: Sequence[MethodSummary]) -> MethodSummary | None:
    candidates = [s for s in summaries if s.baseline and s.pass_at_1.value is not None]
    if not candidates:
        return None
    return max(candidates, key=lambda s: s.pass_at_1.value)  # max keeps the first on ties

