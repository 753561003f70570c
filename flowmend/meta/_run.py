"""A meta session: the models, the sandbox and the evaluator around a study, for training
and for the one report on test."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from flowmend._files import write_atomically, write_json_atomically
from flowmend.errors import UserError
from flowmend.meta._cache import EvalCache
from flowmend.meta._evaluate import Evaluator
from flowmend.meta._space import Setup
from flowmend.meta._splits import select
from flowmend.meta._train import LEARNED_SCHEMA, MetaProgress, Study, TrainPlan

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
    try:
        with Sandbox(workers=None) as sandbox:
            yield Evaluator(
                program=models.program, optimizer=models.optimizer, sandbox=sandbox,
                cache=EvalCache(plan.out / "cache"),
                model=f"{plan.model}|{plan.optimizer_model or plan.model}",
                budget=plan.budget, rng_seed=plan.seed,
                failures=lambda: broker_stats(models.program, models.optimizer)["failed_batches"],
                fatal=(ModelError, BrokerClosed, SandboxError))
    finally:
        if owned:
            models.close()


def problems_of(suite: str) -> list[Any]:
    from flowmend.bench.datasets import load

    return list(load(suite))


def train(plan: TrainPlan, *, finalize: bool = True,
          before_finalize: Callable[[], None] | None = None,
          on_progress: Callable[[MetaProgress], None] | None = None,
          problems: Sequence[Any] | None = None, models=None) -> dict | None:
    """Run this worker's share of the study's trials; with `finalize`, wait for
    `before_finalize` (the other workers), choose the learned set-up (``learned.json``) and
    return it. `problems` and `models` default to the plan's suite and models."""
    problems = problems_of(plan.suite) if problems is None else problems
    with open_evaluator(plan, models) as evaluator:
        study = Study(plan, evaluator, problems)
        study.run_trials(on_progress)
        if not finalize:
            return None
        if before_finalize is not None:
            before_finalize()
        return study.finalize(on_progress)


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
    learned_path = plan.out / "learned.json"
    try:
        learned = json.loads(learned_path.read_text())
    except (OSError, json.JSONDecodeError):
        raise UserError("no learned set-up here; run `flowmend meta train` first",
                        where=str(learned_path)) from None
    if learned.get("schema") != LEARNED_SCHEMA:
        raise UserError(f"not a {LEARNED_SCHEMA} file", where=str(learned_path))
    chosen = Setup.from_json(learned["setup"], where=str(learned_path))
    test_path = plan.out / "test.json"
    if test_path.exists():
        kept = json.loads(test_path.read_text())
        if kept.get("learned") != chosen.digest():
            raise UserError(f"test was already used for set-up {kept.get('learned', '?')[:12]}; "
                            "a set-up chosen after that has no untouched test split",
                            where=str(test_path))
        records = kept["records"]
    else:
        default = replace(chosen, seed=next(iter(plan.seeds)),
                          seed_source=next(iter(plan.seeds.values())),
                          config=plan.space().base)
        problems = select(problems_of(plan.suite) if problems is None else problems, "test",
                          task_id=lambda p: p.task.task_id)
        records = []
        with open_evaluator(plan, models) as evaluator:
            for name, setup in (("default", default), ("learned", chosen)):
                say(f"test: the {name} set-up on {len(problems)} tasks")
                for _, record in evaluator.evaluate_in_order(setup, problems,
                                                             concurrency=plan.concurrency):
                    records.append({**record, "method": name})
        write_json_atomically(test_path, {"schema": TEST_SCHEMA, "learned": chosen.digest(),
                                          "records": records})
    summaries = metrics.summarize(records, baselines=["default"], resamples=resamples,
                                  seed=plan.seed)
    path = plan.out / "REPORT.md"
    plot_front(learned.get("front") or [], plan.out / "front.png")
    write_atomically(path, _report_text(learned, summaries, markdown_table(table_rows(summaries))))
    return path


def plot_front(rows: list[dict], path: Path) -> Path:
    """Train-search utility against tokens per task, one point per finished trial; the
    cost–accuracy front of the feasible trials joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import io

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


def _report_text(learned: dict, summaries, table: str) -> str:
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
    for r in learned["finalists"]:
        rows.append([str(r["trial"]), "yes" if r["default"] else "",
                     f"{r['search']:.3f}", f"{r['confirm']:.3f}", f"{r['val']:.3f}",
                     f"{(r['tokens_per_task'] or 0):.0f}"])
    curse = learned.get("winners_curse")
    return "\n".join([
        "# flowmend meta: the learned set-up on test",
        "",
        f"Chosen: trial {learned['chosen']['trial']} (set-up {learned['chosen']['setup'][:12]}), "
        f"library {learned['library_digest'][:12]}.",
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
        _weights_line(learned.get("weights_fit")),
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
