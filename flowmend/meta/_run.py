"""A meta session: the models, the sandbox and the evaluator around a study, for training
and for the one report on test."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from flowmend._files import write_atomically, write_json_atomically
from flowmend.errors import UserError
from flowmend.meta._cache import EvalCache
from flowmend.meta._evaluate import Evaluator
from flowmend.bench import splits, task_id
from flowmend.engine import RepairConfig
from flowmend.meta._learned import LearnedSetup
from flowmend.meta._train import LEARNED_DIR, MetaProgress, Study, TrainPlan

TEST_SCHEMA = "flowmend.meta-test/1"


@contextlib.contextmanager
def open_evaluator(plan: TrainPlan, models=None) -> Iterator[Evaluator]:
    """The plan's models (or `models`, which stay open) and a sandbox, behind an evaluator
    with the study's cache."""
    from flowmend.bench import broker_stats, models_for
    from flowmend.llm import BrokerClosed, ModelError
    from flowmend.sandbox import Sandbox, SandboxError

    owned = models is None
    if owned:
        models = models_for(backend=plan.backend, model=plan.model,
                            optimizer_model=plan.optimizer_model, seed=plan.seed,
                            base_url=plan.base_url, replay=plan.replay)
    meta = None
    if plan.meta_model and plan.meta_model not in (plan.model, plan.optimizer_model):
        meta = models_for(backend=plan.backend, model=plan.meta_model, optimizer_model=None,
                          seed=plan.seed, base_url=plan.base_url, replay=plan.replay)
    try:
        with Sandbox(workers=None) as sandbox:
            yield Evaluator(
                program=models.program, optimizer=models.optimizer, sandbox=sandbox,
                cache=EvalCache(plan.out / "cache"),
                model=f"{plan.model}|{plan.optimizer_model or plan.model}",
                budget=plan.budget, rng_seed=plan.seed,
                failures=lambda: broker_stats(models.program, models.optimizer)["failed_batches"],
                fatal=(ModelError, BrokerClosed, SandboxError),
                meta=meta.program if meta is not None else None)
    finally:
        if owned:
            models.close()
        if meta is not None:
            meta.close()


def problems_of(suite: str) -> list[Any]:
    from flowmend.bench.datasets import load

    return list(load(suite))


def train(plan: TrainPlan, *, finalize: bool = True,
          before_finalize: Callable[[], None] | None = None,
          on_progress: Callable[[MetaProgress], None] | None = None,
          problems: Sequence[Any] | None = None, models=None,
          lead: bool = True) -> LearnedSetup | None:
    """Run this worker's share of the study's trials on the suite's train split; with
    `finalize`, wait for `before_finalize` (the other workers), choose on val, save the
    learned set-up in ``<out>/learned/`` and return it. `problems` and `models` default to
    the plan's suite and models. Only the `lead` worker prepares a new study (template
    variants, the default trial); the others wait for it."""
    problems = problems_of(plan.suite) if problems is None else problems
    return _study_run(plan, train=splits.select(problems, "train", task_id=task_id),
                      val=splits.select(problems, "val", task_id=task_id), models=models,
                      finalize=finalize, before_finalize=before_finalize,
                      on_progress=on_progress, lead=lead)


def learn(config: RepairConfig, *, train: Sequence[Any], val: Sequence[Any], out: str | Path,
          models, seeds: dict[str, str] | None = None, trials: int = 20, minibatch: int = 16,
          confirm_top: int = 3, seed: int = 0, storage: str | None = None,
          model: str = "model", max_tokens_per_task: float | None = None,
          concurrency: int = 8, template_mutations: int = 0,
          on_progress: Callable[[MetaProgress], None] | None = None) -> LearnedSetup:
    """Learn a set-up from `config` (its budget, library and other fields are the base every
    trial starts from) on `train`, choosing on `val`; returns a new `LearnedSetup` and
    leaves `config` as it was.

    Args:
        config: the base set-up's config; trial 0 runs it unchanged.
        train, val: problems (a `Task` as ``.task`` plus hidden tests, like
            `flowmend.bench.datasets.Problem`). Train is cut by hash into search and confirm.
        out: the study folder (storage, cache, ``learned/``).
        models: the program and optimizer brokers (`flowmend.llm.Models`).
        seeds: seed workflow id → source; default the built-in ``single_shot``.
        model: the models' name, part of the cache keys and of the set-up's manifest.
        template_mutations: rewrites of each optimizer template asked of the optimizer model
            when the study starts; the accepted ones join the search.
    """
    from flowmend import seeds as builtin

    plan = TrainPlan(suite="custom", out=Path(out), storage=storage, trials=trials,
                     budget=config.budget, model=model, seed=seed,
                     seeds=seeds or {"single_shot": builtin.load("single_shot")},
                     minibatch=minibatch, confirm_top=confirm_top,
                     max_tokens_per_task=max_tokens_per_task, concurrency=concurrency,
                     base=config, template_mutations=template_mutations)
    return _study_run(plan, train=train, val=val, models=models, finalize=True,
                      on_progress=on_progress)


def _study_run(plan, *, train, val, models, finalize, before_finalize=None, on_progress=None,
               lead=True):
    with open_evaluator(plan, models) as evaluator:
        study = Study(plan, evaluator, train=train, val=val)
        study.run_trials(on_progress, lead=lead)
        if not finalize:
            return None
        if before_finalize is not None:
            before_finalize()
        return study.finalize(on_progress)


def evolve_library(plan: TrainPlan, *, prune: bool = False, min_count: int = 2,
                   limit: int = 5, fuzz_examples: int = 20,
                   on_progress: Callable[[str], None] | None = None,
                   problems: Sequence[Any] | None = None, models=None) -> dict:
    """One library generation for a study: macros mined from its train-search candidates,
    gated, and admitted on train-confirm against the current generation, paired, with the
    learned set-up (or the default before one is learned); optionally leave-one-out pruning.
    Writes ``<out>/library/generation-N.json`` and returns it."""
    from flowmend.meta._library import LibraryEvolution
    from flowmend.meta._splits import cut_train

    say = on_progress or (lambda _t: None)
    problems = problems_of(plan.suite) if problems is None else problems
    search, confirm = cut_train(splits.select(problems, "train", task_id=task_id),
                                task_id=task_id)
    confirm = confirm[: plan.split_limit]
    search_ids = {task_id(p) for p in search}
    learned_dir = plan.out / LEARNED_DIR
    setup = LearnedSetup.load(learned_dir).setup if learned_dir.is_dir() else \
        plan.space().setup(next(iter(plan.seeds)))
    with open_evaluator(plan, models) as evaluator:
        records = [r for r in evaluator.cache.records() if r.get("task_id") in search_ids]
        say(f"mining {sum(len(r.get('candidates', ())) for r in records)} candidates of "
            f"{len(records)} train-search evaluations; admission on {len(confirm)} "
            "train-confirm tasks")

        def evaluate(s, tasks):
            return [r for _, r in evaluator.evaluate_in_order(s, tasks,
                                                              concurrency=plan.concurrency)]

        return LibraryEvolution(plan.out).evolve(
            records, evaluate=evaluate, setup=setup, tasks=confirm, min_count=min_count,
            limit=limit, fuzz_examples=fuzz_examples, prune=prune, seed=plan.seed)


def report(plan: TrainPlan, *, resamples: int = 10_000,
           on_progress: Callable[[str], None] | None = None,
           problems: Sequence[Any] | None = None, models=None) -> Path:
    """Evaluate the learned and the default set-ups on test, once, and write REPORT.md.

    The first call evaluates and keeps every record in ``test.json``; later calls re-render
    from it. Test belongs to one learned set-up: once it is used, a different one is refused.
    """
    from flowmend.bench import metrics
    from flowmend.bench.report import markdown_table, table_rows

    say = on_progress or (lambda _t: None)
    learned_dir = plan.out / LEARNED_DIR
    if not learned_dir.is_dir():
        raise UserError("no learned set-up here; run `flowmend meta train` first",
                        where=str(learned_dir))
    learned = LearnedSetup.load(learned_dir)
    chosen = learned.setup
    test_path = plan.out / "test.json"
    if test_path.exists():
        kept = json.loads(test_path.read_text())
        if kept.get("learned") != chosen.digest():
            raise UserError(f"test was already used for set-up {kept.get('learned', '?')[:12]}; "
                            "a set-up chosen after that has no untouched test split",
                            where=str(test_path))
        records = kept["records"]
    else:
        problems = splits.select(problems_of(plan.suite) if problems is None else problems,
                                 "test", task_id=task_id)[: plan.split_limit]
        records = []
        with open_evaluator(plan, models) as evaluator:
            for name, setup in (("default", learned.default), ("learned", chosen)):
                say(f"test: the {name} set-up on {len(problems)} tasks")
                for _, record in evaluator.evaluate_in_order(setup, problems,
                                                             concurrency=plan.concurrency):
                    records.append({**record, "method": name})
        write_json_atomically(test_path, {"schema": TEST_SCHEMA, "learned": chosen.digest(),
                                          "records": records})
    summaries = metrics.summarize(records, baselines=["default"], resamples=resamples,
                                  seed=plan.seed)
    path = plan.out / "REPORT.md"
    plot_front(learned.search.get("front") or [], plan.out / "front.png")
    write_atomically(path, _report_text(learned, summaries, markdown_table(table_rows(summaries))))
    return path



def plot_front(rows: list[dict], path: Path) -> Path:
    """Train-search utility against tokens per task, one point per finished trial; the
    cost–accuracy front of the feasible trials joined by a line."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    for feasible, style in ((True, "o"), (False, "x")):
        pts = [r for r in rows if r["feasible"] == feasible]
        ax.plot([r["tokens_per_task"] for r in pts], [r["search"] for r in pts], style,
                color="C0" if feasible else "C3", alpha=0.7,
                label="feasible" if feasible else "over the spend cap")
    front = sorted((r for r in rows if r["front"]), key=lambda r: r["tokens_per_task"])
    ax.plot([r["tokens_per_task"] for r in front], [r["search"] for r in front], "-",
            color="C1", label="front")
    ax.set_xlabel("tokens per task (mean over the trial's train-search tasks)")
    ax.set_ylabel("mean hidden utility on train-search")
    ax.set_title("Meta trials: cost against accuracy (the split searched on)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomically(path, buffer.getvalue())  # all or nothing, like every file of a report
    return path


def _report_text(learned: LearnedSetup, summaries, table: str) -> str:
    search = learned.search
    learned_row = next(s for s in summaries if s.method == "learned")
    delta = learned_row.vs_best_baseline
    if delta is None or delta.value is None:
        verdict = "No paired difference could be computed."
    elif delta.lo is not None and delta.lo <= 0 <= delta.hi:
        verdict = (f"The learned set-up's pass@1 differs from the default's by "
                   f"{delta.value:+.3f}, and the 95% interval [{delta.lo:+.3f}, "
                   f"{delta.hi:+.3f}] includes zero: no difference is shown.")
    else:
        verdict = (f"The learned set-up's pass@1 differs from the default's by "
                   f"{delta.value:+.3f}, 95% interval [{delta.lo:+.3f}, {delta.hi:+.3f}].")
    rows = [["trial", "default", "train-search U", "train-confirm U", "val U (chose)",
             "tokens/task"]]
    for r in search["finalists"]:
        rows.append([str(r["trial"]), "yes" if r["default"] else "",
                     f"{r['search']:.3f}", f"{r['confirm']:.3f}", f"{r['val']:.3f}",
                     f"{(r['tokens_per_task'] or 0):.0f}"])
    curse = search.get("winners_curse")
    return "\n".join([
        "# flowmend meta: the learned set-up on test",
        "",
        f"Chosen: trial {search['chosen']['trial']} (set-up {learned.setup.digest()[:12]}), "
        f"library {learned.library_digest[:12]}. The search spent "
        f"{learned.cost.get('tokens', 0):,} tokens over {learned.cost.get('evaluations', 0)} "
        f"evaluations ({learned.cost.get('study_wall_s')} s of wall time).",
        "",
        "## Held-out test split (touched once)",
        "",
        table,
        "",
        verdict,
        "",
        "## How it was chosen (these figures were used to choose; they are not results)",
        "",
        "\n".join(["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
                  + ["| " + " | ".join(r) + " |" for r in rows[1:]]),
        "",
        "Winner's curse (mean of train-search minus train-confirm over the top trials): "
        + ("n/a" if curse is None else f"{curse:+.3f}") + ".",
        "",
        _weights_line(search.get("weights_fit")),
        "",
        "![cost against accuracy of every trial](front.png)",
        "",
    ])


def _weights_line(fit: dict | None) -> str:
    if not fit:
        return ("Verifier weights: no fit (the default trial's candidates held no pair with "
                "different hidden utility).")
    return (f"Verifier weights fitted on the default trial's train-search candidates: γ "
            f"{fit['gamma_before']:+.3f} → {fit['gamma_after']:+.3f} over {fit['pairs']} pairs "
            "(the split it was fitted on).")
