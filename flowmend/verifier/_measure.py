"""γ (verifier alignment) and κ (proposal quality): pure functions over plain records.

The benchmark computes them after the fact, once ground truth `U` is known; nothing here reads
it. Each returns an `Estimate` carrying its sample size, so a reader can tell 0.3 over 4 pairs
from 0.3 over 4000.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["Scored", "Estimate", "Iteration", "gamma", "kappa", "score_ties"]


@dataclass(frozen=True)
class Estimate:
    """A measured proportion-like value and the number of samples behind it (NaN when n == 0)."""

    value: float
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"value": None if math.isnan(self.value) else self.value, "n": self.n}


@dataclass(frozen=True)
class Scored:
    """One scored candidate: its verifier score `S_F`, its true utility `U`, and its group.

    Only candidates of the same group (one task, one iteration) are compared with each other.
    """

    score: float
    utility: float
    group: str = ""


@dataclass(frozen=True)
class Iteration:
    """One inner-loop iteration: the utility of the current program and of each of its proposals."""

    current: float
    proposals: tuple[float, ...]


def gamma(candidates: Iterable[Scored | Mapping[str, Any]]) -> Estimate:
    """``P[sign(S_F(a) − S_F(b)) = sign(U(a) − U(b))] − 1/2`` over same-group pairs with ``U(a) ≠ U(b)``.

    As written: a pair whose scores tie has sign 0 on the left and ±1 on the right, so it does
    not agree (a verifier that cannot tell two candidates apart has not ordered them). The
    value lies in [−1/2, 1/2]: 1/2 is a verifier that orders every distinguishable pair right,
    0 is chance. ``n`` is the number of pairs counted; `score_ties` says how many tied.
    """
    agree = 0
    pairs = 0
    for ds, du in _distinguishable_pairs(candidates):
        pairs += 1
        agree += ds != 0 and (ds > 0) == (du > 0)
    if pairs == 0:
        return Estimate(math.nan, 0)
    return Estimate(agree / pairs - 0.5, pairs)


def score_ties(candidates: Iterable[Scored | Mapping[str, Any]]) -> Estimate:
    """The share of γ's pairs (same group, ``U(a) ≠ U(b)``) whose scores tie; n = pairs."""
    ties = 0
    pairs = 0
    for ds, _ in _distinguishable_pairs(candidates):
        pairs += 1
        ties += ds == 0
    if pairs == 0:
        return Estimate(math.nan, 0)
    return Estimate(ties / pairs, pairs)


def _distinguishable_pairs(candidates: Iterable[Scored | Mapping[str, Any]]):
    """``(S(a) − S(b), U(a) − U(b))`` for every same-group pair whose utilities differ."""
    groups: dict[str, list[Scored]] = defaultdict(list)
    for record in candidates:
        c = _candidate(record)
        groups[c.group].append(c)
    for members in groups.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                du = a.utility - b.utility
                if du != 0:
                    yield a.score - b.score, du


def kappa(iterations: Iterable[Iteration | Mapping[str, Any]], delta: float) -> Estimate:
    """``P[some one of the m proposals of an iteration has U ≥ U(current) + Δ]``.

    An iteration with no proposals (every patch was invalid) counts as one that found nothing.
    ``n`` is the number of iterations.
    """
    if not math.isfinite(delta):
        raise ValueError(f"delta must be finite, got {delta!r}")
    hits = 0
    n = 0
    for record in iterations:
        it = _iteration(record)
        n += 1
        hits += any(u >= it.current + delta for u in it.proposals)
    if n == 0:
        return Estimate(math.nan, 0)
    return Estimate(hits / n, n)


def _candidate(record: Scored | Mapping[str, Any]) -> Scored:
    if isinstance(record, Scored):
        return record
    return Scored(float(record["score"]), float(record["utility"]), str(record.get("group", "")))


def _iteration(record: Iteration | Mapping[str, Any]) -> Iteration:
    if isinstance(record, Iteration):
        return record
    proposals: Sequence[Any] = record["proposals"]
    return Iteration(float(record["current"]), tuple(float(u) for u in proposals))
