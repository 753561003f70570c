"""Fitting the verifier's weights offline: the stored candidates re-scored under new weights,
so that γ on train is as high as it can be, with no new model call and no new run.

Re-scoring is exact because a candidate's record keeps its whole `Feedback` (pass ratio,
compile and runtime errors, cost, violations, self-checks): ``S_F`` is a function of those and
the weights alone. What re-scoring cannot tell is how the loop would have *moved* under other
weights (other incumbents, other proposals); the trial that runs the fitted weights measures
that, which is why the fit is enqueued as a trial and not adopted as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from flowmend.bench.metrics import utility
from flowmend.verifier import Feedback, Scored, ScoreWeights, gamma, score


@dataclass(frozen=True)
class WeightFit:
    """The fitted weights and γ (over the same pairs) before and after."""

    weights: ScoreWeights
    gamma_before: float
    gamma_after: float
    pairs: int


def scored(records: Iterable[dict], weights: ScoreWeights) -> list[Scored]:
    """Every stored candidate with feedback and hidden utility, scored under `weights`,
    grouped by its run (task and set-up) as γ compares them."""
    out = []
    for r in records:
        feedback = r.get("candidate_feedback") or []
        for c, fb in zip(r.get("candidates", ()), feedback):
            if fb is None or utility(c) is None:
                continue
            out.append(Scored(score(Feedback.from_json(fb), weights), utility(c),
                              f"{r['task_id']}|{r.get('setup', r.get('method', ''))}"))
    return out


def fit_weights(records: Sequence[dict], base: ScoreWeights, *, trials: int = 200,
                seed: int = 0) -> WeightFit | None:
    """α, β, λ and μ (self-checks on or off) that maximise γ on `records`; None when the
    records hold no pair of candidates with different utility to learn from."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    before = gamma(scored(records, base))
    if before.n == 0:
        return None

    def objective(trial) -> float:
        return gamma(scored(records, suggest_weights(trial, base))).value

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(weight_params(base))  # the fit can only match or beat the base
    study.optimize(objective, n_trials=trials)
    best = suggest_weights(optuna.trial.FixedTrial(study.best_params), base)
    return WeightFit(best, before.value, study.best_value, before.n)


def suggest_weights(trial, base: ScoreWeights) -> ScoreWeights:
    """The weights an Optuna trial suggests: α, β, λ on log scales, and μ only while the
    model's self-written checks count at all (a conditional parameter)."""
    alpha = trial.suggest_float("alpha", 0.1, 4.0, log=True)
    beta = trial.suggest_float("beta", 0.05, 2.0, log=True)
    lam = trial.suggest_float("lam", 1e-7, 1e-3, log=True)
    mu = trial.suggest_float("mu", 0.01, 1.0, log=True) \
        if trial.suggest_categorical("self_tests", [True, False]) else 0.0
    return replace(base, alpha=alpha, beta=beta, lam=lam, mu=mu)


def weight_params(w: ScoreWeights) -> dict:
    """`suggest_weights`'s parameters for the weights `w`."""
    params = {"alpha": w.alpha, "beta": w.beta, "lam": w.lam, "self_tests": w.mu > 0}
    if w.mu > 0:
        params["mu"] = w.mu
    return params
