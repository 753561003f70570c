"""The score `S_F` that ranks candidates, and its weights: configuration that `meta/` may learn."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Mapping

from flowmend.errors import UserError

if TYPE_CHECKING:
    from flowmend.verifier._feedback import Feedback

__all__ = ["ScoreWeights", "score"]


@dataclass(frozen=True)
class ScoreWeights:
    """Weights of ``S_F = passed_ratio − α·syntax_error − β·runtime_error − λ·cost − ν·violation + μ·self_ratio``.

    ``syntax_error`` is 1 when the output holds no compiling program (a syntax error, or no
    code at all), ``runtime_error`` when loading the code or a check raised or timed out,
    ``violation`` when a constraint is broken, ``self_ratio`` the pass ratio of self-checks.

    With the defaults a syntax error (score −1) ranks below a program that fails every check
    but runs (0), a crash costs as much as half the checks, and cost only breaks ties between
    otherwise equal candidates. All weights are non-negative.
    """

    alpha: float = 1.0
    """Penalty for output that is not a compiling program: a syntax error, or no code at all."""
    beta: float = 0.5
    """Penalty for a runtime error: the code failed to load, or a check raised, or timed out."""
    lam: float = 1e-5
    """Penalty per cost unit of the run (`Cost.units`, the LLM price table's units: for a local
    model one token, prompt or completion), so 1000 tokens cost 0.01."""
    nu: float = 0.25
    """Penalty for any constraint violation (entry point missing, wrong signature, no code)."""
    mu: float = 0.1
    """Bonus weight of the self-check pass ratio (tests the workflow wrote for itself)."""

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"weight {f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise UserError(f"weight {f.name} must be finite and >= 0, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str | None = None) -> "ScoreWeights":
        """Weights from a config mapping; missing keys keep their defaults.

        Raises:
            UserError: an unknown key or a value that is not a non-negative number.
        """
        if not isinstance(data, Mapping):
            raise UserError(f"score weights must be a mapping, got {type(data).__name__}", where=where)
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise UserError(
                f"unknown score weight(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}",
                where=where,
            )
        try:
            return cls(**dict(data))
        except UserError as err:
            raise UserError(err.message, where=where) from None


def score(feedback: "Feedback", weights: ScoreWeights = ScoreWeights()) -> float:
    """``S_F`` of one candidate's feedback: higher is better; used only to rank candidates."""
    return (
        feedback.passed_ratio
        - weights.alpha * (not feedback.compiled)
        - weights.beta * (feedback.runtime_error is not None)
        - weights.lam * feedback.cost.units
        - weights.nu * bool(feedback.violations)
        + weights.mu * feedback.self_passed_ratio
    )
