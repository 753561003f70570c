"""The meta loop's search: Optuna trials (ask/tell) over set-ups, scored on train-search with
per-task pruning, the best re-evaluated on train-confirm, the final one chosen on val.

Picture of one study (any number of workers share the storage and the cache)::

    worker ──ask──▶ Setup ──evaluate task by task (train-search, fixed order)──▶ report(U, step)
       ▲                         │ pruned: worse than the best, paired (Wilcoxon)
       └──tell(mean U)───────────┘ a new best: re-evaluated on all of train-confirm
    finalize: top trials ─▶ train-confirm (winner's curse) ─▶ val (selection) ─▶ learned/

Test is never touched here: `flowmend meta report` evaluates the learned and the default
set-ups on it, once.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flowmend._files import write_json_atomically
from flowmend.bench import task_id
from flowmend.bench.metrics import utility
from flowmend.engine import Budget, RepairConfig
from flowmend.errors import UserError
from flowmend.meta._evaluate import Evaluator
from flowmend.meta._learned import LearnedSetup
from flowmend.meta._space import SearchSpace, Setup
from flowmend.meta._splits import cut_train, search_order, split_digest
from flowmend.meta._templates import FIELDS, TemplatePool
from flowmend.meta._weights import fit_weights, weight_params
from flowmend.meta import _study

LEARNED_DIR = "learned"
_TEMPLATES = "templates"  # study attr: template field → the variant ids trials choose from
_CONFIRM = "confirm/"


@dataclass(frozen=True)
class TrainPlan:
    """What one study searches with; everything but `trials`, `workers` and `concurrency` is
    its identity, and a resume with other values is refused.

    Attributes:
        suite: the benchmark suite the tasks come from.
        out: the study folder (journal, cache, set-ups, learned/).
        storage: Optuna storage URL or journal path; None is ``<out>/study.journal``.
        trials: trials the study should hold in all (finished ones count; a resume adds the
            rest).
        budget: each task's budget, for every set-up.
        model, optimizer_model, backend, replay, base_url: the models.
        seed: the repairs' rng seed, the sampler's seed and the task order's.
        seeds: seed workflow id → source; the first is the default.
        minibatch: train-search tasks a trial is scored on.
        confirm_top: trials re-evaluated on train-confirm and compared on val at the end.
        max_tokens_per_task: cost constraint: a set-up whose mean spend per task passes it
            is infeasible (None: the budget's token cap).
        concurrency: tasks evaluated at once by one worker.
        stale_after_s: a RUNNING trial with no heartbeat for this long is retried.
        base: the config trials start from (its budget and rng seed are replaced by
            `budget` and `seed`); trial 0 runs it unchanged.
        template_mutations: rewrites of each optimizer template the meta model is asked for
            once, when the study starts; the accepted ones join the search (0: none).
        meta_model: the model that writes them (None: the optimizer model).
        split_limit: at most this many tasks of train-confirm, val and test, the first in
            dataset order (a smoke run on a small machine; None: all).
    """

    suite: str
    out: Path
    storage: str | None = None
    trials: int = 20
    budget: Budget = field(default_factory=lambda: Budget(calls=8, tokens=4000, wall_s=None))
    model: str = "smollm2"
    optimizer_model: str | None = None
    backend: str = "vllm"
    replay: str | None = None
    base_url: str | None = None
    seed: int = 0
    seeds: dict[str, str] = field(default_factory=dict)
    minibatch: int = 16
    confirm_top: int = 3
    max_tokens_per_task: float | None = None
    concurrency: int = 8
    stale_after_s: float = 900.0
    base: RepairConfig = field(default_factory=RepairConfig)
    template_mutations: int = 0
    meta_model: str | None = None
    split_limit: int | None = None

    def identity(self) -> dict[str, Any]:
        return {
            "suite": self.suite, "budget": self.budget.to_json(), "model": self.model,
            "optimizer_model": self.optimizer_model or self.model, "backend": self.backend,
            "seed": self.seed, "minibatch": self.minibatch,
            "seeds": {k: hashlib.sha256(v.encode()).hexdigest()[:16]
                      for k, v in self.seeds.items()},
            "base": self.space().base.digest,
            "template_mutations": self.template_mutations, "meta_model": self.meta_name,
            "split_limit": self.split_limit,
            "max_tokens_per_task": self.max_tokens_per_task,
        }

    @property
    def meta_name(self) -> str:
        return self.meta_model or self.optimizer_model or self.model

    @property
    def spend_cap(self) -> float:
        if self.max_tokens_per_task is not None:
            return self.max_tokens_per_task
        return float(self.budget.tokens) if self.budget.tokens is not None else math.inf

    def space(self) -> SearchSpace:
        return SearchSpace(seeds=dict(self.seeds),
                           base=replace(self.base, budget=self.budget, rng_seed=self.seed))


@dataclass(frozen=True)
class MetaProgress:
    """Where a study stands, for a progress bar.

    Attributes:
        trials_done, trials_total: finished trials (complete or pruned) of the study.
        best_confirm: the best mean hidden utility on train-confirm so far (None before any).
        tokens: tokens this worker's evaluations spent (cache hits spend none).
        elapsed_s: this worker's wall time.
        stage: what it does now.
    """

    trials_done: int
    trials_total: int
    best_confirm: float | None
    tokens: int
    elapsed_s: float
    stage: str

    @property
    def eta_s(self) -> float | None:
        if not self.trials_done or self.trials_done >= self.trials_total:
            return None
        return self.elapsed_s / self.trials_done * (self.trials_total - self.trials_done)


class Study:
    """One worker's view of a study: the storage, the set-ups, the evaluator."""

    def __init__(self, plan: TrainPlan, evaluator: Evaluator, *, train: Sequence[Any],
                 val: Sequence[Any]):
        self.plan = plan
        self.evaluator = evaluator
        self.space = plan.space()
        search, confirm = cut_train(train, task_id=task_id)
        self.search = search_order(search, plan.seed)[: plan.minibatch]
        self.confirm = confirm[: plan.split_limit]
        self.val = list(val)[: plan.split_limit]
        if not self.search or not self.confirm or not self.val:
            raise UserError(f"too few tasks for the meta splits (train-search "
                            f"{len(self.search)}, train-confirm {len(self.confirm)}, "
                            f"val {len(self.val)}); each needs at least one")
        self.splits = {"train": split_digest(train, task_id=task_id),
                       "val": split_digest(val, task_id=task_id)}
        self.storage = _study.storage_for(plan.storage, plan.out)
        self.study = _study.open_study(self.storage, {**plan.identity(), "splits": self.splits},
                                       seed=plan.seed)
        self.started = time.monotonic()

    # -- set-ups by digest, so any worker (and the report) can rebuild a trial's -----------

    def _setup_path(self, digest: str) -> Path:
        return self.plan.out / "setups" / f"{digest}.json"

    def save_setup(self, setup: Setup) -> None:
        path = self._setup_path(setup.digest())
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomically(path, setup.to_json())

    def setup_of(self, trial) -> Setup:
        digest = trial.user_attrs["setup"]
        path = self._setup_path(digest)
        return Setup.from_json(json.loads(path.read_text()), where=str(path))

    # -- evaluation ----------------------------------------------------------------------

    def mean_utility(self, setup: Setup, problems: Sequence[Any]) -> tuple[float, list[dict]]:
        records = [r for _, r in self.evaluator.evaluate_in_order(
            setup, problems, concurrency=self.plan.concurrency)]
        return statistics.fmean(utility(r) for r in records), records

    def progress(self, stage: str) -> MetaProgress:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        confirms = list(self._confirmed().values())
        return MetaProgress(trials_done=min(done, self.plan.trials),
                            trials_total=self.plan.trials,
                            best_confirm=max(confirms) if confirms else None,
                            tokens=self.evaluator.tokens, elapsed_s=time.monotonic() - self.started,
                            stage=stage)

    # -- the search ----------------------------------------------------------------------

    def prepare(self, report, *, lead: bool) -> None:
        """Fix what every trial chooses from, once per study: the lead worker asks the meta
        model for template variants and enqueues the default set-up; the others wait for it.
        """
        if lead and _TEMPLATES not in self.study.user_attrs:
            chosen: dict[str, list[str]] = {}
            if self.plan.template_mutations:
                pool = TemplatePool(self.plan.out / "templates.json")
                for name in FIELDS:
                    report(self.progress(f"asking {self.plan.meta_name} for "
                                         f"{self.plan.template_mutations} {name} variants"))
                    pool.mutate(self.evaluator.meta, name, self.space.base.optimizer,
                                model=self.plan.meta_name, tries=self.plan.template_mutations)
                    chosen[name] = list(pool.choices(name, self.space.base.optimizer))
            if not self.study.get_trials(deepcopy=False):
                self.study.enqueue_trial(self._with_templates(chosen).default_params(),
                                         user_attrs={"default": True})
            self.study.set_user_attr(_TEMPLATES, chosen)
        deadline = time.monotonic() + self.plan.stale_after_s
        while _TEMPLATES not in self.study.user_attrs:
            if time.monotonic() > deadline:
                raise UserError("the study's lead worker never prepared it; start one without "
                                "--worker")
            time.sleep(1.0)
        self.space = self._with_templates(self.study.user_attrs[_TEMPLATES])

    def _with_templates(self, chosen: dict[str, list[str]]) -> SearchSpace:
        if not chosen:
            return self.space
        pool = TemplatePool(self.plan.out / "templates.json")
        texts = {name: {i: t for i, t in pool.choices(name, self.space.base.optimizer).items()
                        if i in ids} for name, ids in chosen.items()}
        return replace(self.space, templates=texts)

    def run_trials(self, on_progress: Callable[[MetaProgress], None] | None = None, *,
                   lead: bool = True) -> int:
        """Ask, evaluate, tell, until the study holds `plan.trials` trials; returns how many
        this worker ran. Another worker's stale trials are recovered first."""
        from optuna.trial import TrialState

        report = on_progress or (lambda _p: None)
        recovered = _study.recover_stale(self.study, stale_after_s=self.plan.stale_after_s)
        if recovered:
            report(self.progress(f"retrying trial(s) {', '.join(map(str, recovered))} "
                                 "whose worker died"))
        self.prepare(report, lead=lead)
        ran = 0
        while self._open_slots() > 0:
            trial = self.study.ask()
            _study.own(trial)
            setup = self.space.suggest(trial)
            self.save_setup(setup)
            trial.set_user_attr("setup", setup.digest())
            report(self.progress(f"trial {trial.number}: train-search"))
            state, value, records = self._score(trial, setup, report)
            if state == TrialState.COMPLETE:
                self.study.tell(trial, value)
                if trial.user_attrs.get("default"):
                    self._enqueue_fitted_weights(setup, records, report)
                if self._is_best(trial.number, value):
                    report(self.progress(f"trial {trial.number}: a new best, train-confirm"))
                    self.confirm_trial(trial.number)
            else:
                self.study.tell(trial, state=state)
            ran += 1
            report(self.progress(f"trial {trial.number}: done"))
        return ran

    def _open_slots(self) -> int:
        from optuna.trial import TrialState

        counted = [t for t in self.study.get_trials(deepcopy=False)
                   if t.state != TrialState.FAIL and t.state != TrialState.WAITING]
        return self.plan.trials - len(counted)

    def _score(self, trial, setup: Setup, report) -> tuple[Any, float | None]:
        from optuna.trial import TrialState

        utilities, tokens, records, passed = [], [], [], 0
        for step, record in self.evaluator.evaluate_in_order(
                setup, self.search, concurrency=self.plan.concurrency):
            records.append(record)
            utilities.append(utility(record))
            passed += bool(record.get("passed"))
            tokens.append(int(record.get("tokens") or 0))
            trial.report(utilities[-1], step)
            _study.beat(trial)
            if trial.should_prune():
                trial.set_user_attr("tasks", len(utilities))
                return TrialState.PRUNED, None, records
        spend = statistics.fmean(tokens)
        trial.set_user_attr("tasks", len(utilities))
        trial.set_user_attr("passed", passed)
        trial.set_user_attr("tokens_per_task", spend)
        trial.set_user_attr("constraint", spend - self.plan.spend_cap)
        trial.set_constraint("tokens_per_task", spend - self.plan.spend_cap)
        return TrialState.COMPLETE, statistics.fmean(utilities), records

    def _enqueue_fitted_weights(self, setup: Setup, records: list[dict], report) -> None:
        """Fit the verifier's weights on the default trial's stored candidates (no model
        call) and enqueue the default set-up with them as the next trial."""
        if "weights_fit" in self.study.user_attrs:
            return  # another worker did
        fit = fit_weights(records, setup.config.weights, seed=self.plan.seed)
        summary = None if fit is None else {
            "weights": fit.weights.to_dict(), "gamma_before": fit.gamma_before,
            "gamma_after": fit.gamma_after, "pairs": fit.pairs}
        self.study.set_user_attr("weights_fit", summary)
        if fit is None or fit.weights == setup.config.weights:
            return
        report(self.progress(f"verifier weights fitted on train-search: γ "
                             f"{fit.gamma_before:+.3f} → {fit.gamma_after:+.3f} over "
                             f"{fit.pairs} pairs; enqueued as a trial"))
        params = {**self.space.default_params(), **weight_params(fit.weights)}
        if not params["self_tests"]:
            params.pop("mu", None)
        self.study.enqueue_trial(params, user_attrs={"fitted_weights": True})

    def _is_best(self, number: int, value: float) -> bool:
        best = [t for t in self._complete() if t.number != number]
        return not best or value > max(t.value for t in best)

    def _complete(self) -> list:
        from optuna.trial import TrialState

        return [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None]

    def front(self) -> list[dict]:
        """Every finished trial's spend and train-search utility, with whether it is on the
        cost–accuracy front of the feasible ones (no other is cheaper and at least as good)."""
        rows = [{"trial": t.number, "tokens_per_task": float(t.user_attrs["tokens_per_task"]),
                 "search": float(t.value),
                 "feasible": float(t.user_attrs.get("constraint", 0.0)) <= 0}
                for t in self._complete() if "tokens_per_task" in t.user_attrs]
        for r in rows:
            r["front"] = r["feasible"] and not any(
                o["feasible"] and o is not r and o["tokens_per_task"] <= r["tokens_per_task"]
                and o["search"] >= r["search"]
                and (o["tokens_per_task"], o["search"]) != (r["tokens_per_task"], r["search"])
                for o in rows)
        return rows

    def confirm_trial(self, number: int) -> float:
        """Trial `number`'s mean hidden utility on all of train-confirm. A finished trial
        cannot be updated, so the figure is a study attribute, ``confirm/<number>``."""
        known = self._confirmed()
        if number in known:
            return known[number]
        trial = self.study.get_trials(deepcopy=False)[number]
        value, _ = self.mean_utility(self.setup_of(trial), self.confirm)
        self.study.set_user_attr(f"{_CONFIRM}{number}", value)
        return value

    def _confirmed(self) -> dict[int, float]:
        return {int(k[len(_CONFIRM):]): float(v) for k, v in self.study.user_attrs.items()
                if k.startswith(_CONFIRM)}

    # -- the end of a study ----------------------------------------------------------------

    def finalize(self, on_progress: Callable[[MetaProgress], None] | None = None
                 ) -> LearnedSetup:
        """Confirm the top trials, choose among them (and the default) on val, save the
        learned set-up in ``<out>/learned/`` and return it."""
        report = on_progress or (lambda _p: None)
        feasible = [t for t in self._complete()
                    if float(t.user_attrs.get("constraint", 0.0)) <= 0]
        if not feasible:
            raise UserError("no trial finished within the cost constraint; nothing was learned")
        top = sorted(feasible, key=lambda t: -t.value)[: self.plan.confirm_top]
        default = next((t for t in self._complete() if t.user_attrs.get("default")), None)
        finalists = top + ([default] if default is not None and default not in top else [])
        rows = []
        for t in finalists:
            report(self.progress(f"finalists: trial {t.number} on train-confirm and val"))
            confirm = self.confirm_trial(t.number)
            val, _ = self.mean_utility(self.setup_of(t), self.val)
            rows.append({"trial": t.number, "default": bool(t.user_attrs.get("default")),
                         "top": t in top,
                         "search": t.value, "confirm": confirm, "val": val,
                         "tokens_per_task": t.user_attrs.get("tokens_per_task"),
                         "setup": t.user_attrs["setup"]})
        # Selection on val; ties go to the cheaper set-up.
        chosen = max(rows, key=lambda r: (r["val"], -(r["tokens_per_task"] or 0.0)))
        # The winner's curse: how much the trials picked for their train-search score lose
        # on train-confirm, tasks they were not picked on.
        curse = [r["search"] - r["confirm"] for r in rows if r["top"]]
        trials = self.study.get_trials(deepcopy=False)
        default_setup = self.setup_of(default) if default is not None else \
            self.space.suggest(optuna_fixed(self.space.default_params()))
        learned = LearnedSetup(
            setup=self.setup_of(trials[chosen["trial"]]),
            default=default_setup,
            models={"program": self.plan.model,
                    "optimizer": self.plan.optimizer_model or self.plan.model},
            splits=self.splits,
            search={"chosen": chosen, "finalists": rows,
                    "winners_curse": statistics.fmean(curse) if curse else None,
                    "front": self.front(),
                    "weights_fit": self.study.user_attrs.get("weights_fit"),
                    "sizes": {"train-search": len(self.search),
                              "train-confirm": len(self.confirm), "val": len(self.val)},
                    "note": "train-search, train-confirm and val figures were used to choose; "
                            "held-out figures come from `flowmend meta report`, on test"},
            cost=self.cost(trials))
        learned.save(self.plan.out / LEARNED_DIR)
        return learned

    def cost(self, trials) -> dict[str, Any]:
        """What the whole study spent: every evaluation in its cache (any worker's), and the
        wall time from its first trial's start to its last one's end."""
        records = list(self.evaluator.cache.records())
        starts = [t.datetime_start for t in trials if t.datetime_start]
        ends = [t.datetime_complete for t in trials if t.datetime_complete]
        return {
            "trials": len(trials),
            "evaluations": len(records),
            "tokens": sum(int(r.get("tokens") or 0) for r in records),
            "calls": sum(int(r.get("calls") or 0) for r in records),
            "evaluation_wall_s": round(sum(float(r.get("wall_s") or 0) for r in records), 1),
            "study_wall_s": round((max(ends) - min(starts)).total_seconds(), 1)
            if starts and ends else None,
        }


def optuna_fixed(params: dict[str, Any]):
    import optuna

    return optuna.trial.FixedTrial(params)

