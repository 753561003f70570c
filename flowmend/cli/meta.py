"""The `flowmend meta train` and `flowmend meta report` verbs: the offline outer loop that
learns the inner loop's set-up on train, and its one report on test."""

from __future__ import annotations

import argparse

from flowmend.cli._common import LiveBar, read_text
from flowmend.llm._config import KINDS as BACKENDS

SUITES = ("humaneval", "mbpp", "mbpp-sanitized")
DEFAULT_SEEDS = "single_shot,plan_then_code,generate_then_review"


def register(sub) -> None:
    """Add `meta train` and `meta report` to the `flowmend` parser."""
    meta = sub.add_parser(
        "meta", help="learn the inner loop's set-up offline (Optuna), report it on test",
        description="The offline outer loop. `train` searches set-ups (seed workflow, loop "
                    "shape, mode, menu, optimizer templates, verifier weights) with Optuna on "
                    "train tasks, using their hidden tests; `library` evolves the operator "
                    "library (mined macros, admitted only if they help); `show` sets a learned "
                    "set-up beside its default; `report` evaluates it against the default on "
                    "the test split, once.")
    verbs = meta.add_subparsers(dest="meta_verb", metavar="VERB")
    train = verbs.add_parser(
        "train", help="search set-ups; resumable, several workers may share one study",
        description="Run Optuna trials (ask/tell) until the study holds --trials of them. "
                    "Each trial is scored by mean hidden utility on a fixed minibatch of the "
                    "train-search split, task by task, and pruned when it is worse than the "
                    "best trial on the same tasks (Wilcoxon). A new best is re-evaluated on "
                    "train-confirm. At the end the top trials and the default are compared on "
                    "val and the winner goes to DIR/learned.json. Killed (even -9) and started "
                    "again with the same arguments, it resumes: no finished trial runs again "
                    "and the evaluation cache re-evaluates nothing it has.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_plan_options(train)
    train.add_argument("--trials", type=int, default=20,
                       help="trials the study holds in all (a resume adds the missing ones)")
    train.add_argument("--workers", type=int, default=1,
                       help="processes working on the study at once (each loads its models)")
    train.add_argument("--concurrency", type=int, default=8,
                       help="tasks one worker evaluates at once (their model calls batch)")
    train.add_argument("--worker", action="store_true",
                       help="join the study as a worker only: run trials, leave preparing the "
                            "study and choosing at the end to the process started without it "
                            "(for workers on other machines sharing --storage and --out)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(run=_run_train, starts_processes=True)
    report = verbs.add_parser(
        "report", help="evaluate the learned set-up and the default on test, once",
        description="Evaluate DIR/learned.json's set-up and the default set-up on every task "
                    "of the test split, keep every record in DIR/test.json and write "
                    "DIR/REPORT.md: pass@1 with intervals, the paired difference, spend, γ and "
                    "κ. Test is touched once: later calls re-render from test.json, and a "
                    "set-up learned after that is refused.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_plan_options(report)
    report.add_argument("--concurrency", type=int, default=8, help="tasks evaluated at once")
    report.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    report.set_defaults(run=_run_report, starts_processes=True)
    library = verbs.add_parser(
        "library", help="evolve the operator library: mine macros, admit those that help",
        description="One library generation: macro-operators mined from the patch sequences "
                    "that raised hidden utility on the study's train-search candidates, each "
                    "gated like the built-ins (its examples and the fuzz properties) and "
                    "admitted only if it raises mean hidden utility or κ on train-confirm, "
                    "paired against the library without it. Every decision is kept in "
                    "DIR/library/decisions.jsonl, and nothing decided is proposed again. "
                    "Writes DIR/library/generation-N.json (its digest and specs); train on it "
                    "with `meta train --library DIR/library/generation-N.json`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_plan_options(library)
    library.add_argument("--min-count", type=int, default=2,
                         help="times a run of patches must have helped to become a macro")
    library.add_argument("--macros", type=int, default=5, help="macros proposed at most")
    library.add_argument("--prune", action="store_true",
                         help="also ablate each operator (leave-one-out) and deprecate those "
                              "whose removal never lowers a task's utility (listed, not deleted)")
    library.add_argument("--concurrency", type=int, default=8, help="tasks evaluated at once")
    library.set_defaults(run=_run_library, starts_processes=True)
    show = verbs.add_parser(
        "show", help="the learned set-up against the default, side by side",
        description="Print a learned set-up directory (DIR/learned, or any `LearnedSetup.save` "
                    "directory) against the default it started from: loop shape, mode, "
                    "optimizer, verifier weights, the seed, the optimizer's templates as "
                    "diffs, the operator library, and how it was chosen.")
    show.add_argument("setup", metavar="DIR", help="a learned set-up directory")
    show.set_defaults(run=_run_show)
    meta.set_defaults(run=lambda _args: meta.print_help() or 2)


def _add_plan_options(parser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="the study folder")
    parser.add_argument("--suite", choices=SUITES, default="mbpp", help="benchmark suite")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage: an RDB URL (sqlite:///f.db, postgresql://...) or "
                             "a journal file (default: DIR/study.journal)")
    parser.add_argument("--budget-calls", type=int, default=8, help="LLM calls per task")
    parser.add_argument("--budget-tokens", type=int, default=4000, help="tokens per task")
    parser.add_argument("--budget-wall-s", type=float, default=None, metavar="S",
                        help="wall seconds per task (default: none; as in the bench, a task's "
                             "wall time depends on what runs beside it, docs/bench.md)")
    parser.add_argument("--max-tokens-per-task", type=float, default=None,
                        help="cost constraint: a set-up spending more tokens per task on "
                             "average is infeasible (default: the token budget)")
    parser.add_argument("--seeds", default=DEFAULT_SEEDS,
                        help="the seed workflows searched over, comma-separated ids; the first "
                             "is the default set-up's")
    parser.add_argument("--minibatch", type=int, default=16,
                        help="train-search tasks each trial is scored on")
    parser.add_argument("--split-limit", type=int, default=None, metavar="N",
                        help="at most N tasks of train-confirm, val and test, the first in "
                             "dataset order: a smoke run on a small machine (part of the "
                             "study's identity; REPORT.md gives every n)")
    parser.add_argument("--confirm-top", type=int, default=3,
                        help="top trials re-evaluated on train-confirm and compared on val")
    parser.add_argument("--template-mutations", type=int, default=4,
                        help="rewrites of each optimizer prompt template asked of the meta "
                             "model when the study starts; those that keep their fields join "
                             "the search (0: search the shipped templates only)")
    parser.add_argument("--meta-model", default=None,
                        help="the model that rewrites templates (default: the optimizer model; "
                             "a stronger one can write while the weak one stays in the loop)")
    parser.add_argument("--library", default=None, metavar="GENERATION.json",
                        help="the operator library trials use: a `meta library` generation "
                             "manifest (default: the built-in operators)")
    parser.add_argument("--seed", type=int, default=0,
                        help="rng seed of the repairs, the sampler and the task order")
    parser.add_argument("--backend", choices=BACKENDS, default="vllm", help="model backend")
    parser.add_argument("--model", default="smollm2", help="program model")
    parser.add_argument("--optimizer-model", default=None,
                        help="optimizer model (default: the program model)")
    parser.add_argument("--replay", default=None, metavar="FILE",
                        help="recorded completions for --backend replay")
    parser.add_argument("--base-url", default=None, help="server URL for --backend openai")


def _plan(args):
    from pathlib import Path

    from dataclasses import replace

    from flowmend import seeds
    from flowmend.engine import Budget, RepairConfig
    from flowmend.errors import UserError
    from flowmend.meta import TrainPlan

    for flag, value in (("--budget-calls", args.budget_calls),
                        ("--budget-tokens", args.budget_tokens),
                        ("--minibatch", args.minibatch), ("--confirm-top", args.confirm_top),
                        ("--concurrency", args.concurrency),
                        ("--trials", getattr(args, "trials", 1)),
                        ("--workers", getattr(args, "workers", 1))):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, not {value}")
    if args.split_limit is not None and args.split_limit < 1:
        raise UserError(f"--split-limit must be at least 1, not {args.split_limit}")
    if not 0 <= args.template_mutations <= 16:
        raise UserError(f"--template-mutations must lie in [0, 16], not "
                        f"{args.template_mutations}")
    if args.budget_wall_s is not None and args.budget_wall_s <= 0:
        raise UserError(f"--budget-wall-s must be positive, not {args.budget_wall_s}")
    if args.backend == "replay" and not args.replay:
        raise UserError("--backend replay needs --replay FILE (recorded completions)")
    if args.replay and not Path(args.replay).is_file():
        raise UserError("no such file", where=f"--replay {args.replay}")
    if args.backend == "openai" and not args.base_url:
        raise UserError("--backend openai needs --base-url URL")
    base = RepairConfig()
    if args.library:
        base = replace(base, library=_generation_library(args.library))
    ids = [s.strip() for s in args.seeds.split(",") if s.strip()]
    if not ids:
        raise UserError("--seeds names no seed workflow")
    return TrainPlan(
        suite=args.suite, out=Path(args.out), storage=args.storage,
        trials=getattr(args, "trials", 1),
        budget=Budget(calls=args.budget_calls, tokens=args.budget_tokens,
                      wall_s=args.budget_wall_s),
        model=args.model, optimizer_model=args.optimizer_model, backend=args.backend,
        replay=str(Path(args.replay).resolve()) if args.replay else None,
        base_url=args.base_url, seed=args.seed,
        seeds={s: seeds.load(s) for s in ids}, minibatch=args.minibatch,
        confirm_top=args.confirm_top, max_tokens_per_task=args.max_tokens_per_task,
        concurrency=args.concurrency, template_mutations=args.template_mutations,
        meta_model=args.meta_model, base=base, split_limit=args.split_limit)


def _generation_library(path: str):
    import json

    from flowmend.engine import LibraryError, load_library
    from flowmend.errors import UserError

    try:
        data = json.loads(read_text(path, "library generation"))
    except json.JSONDecodeError as err:
        raise UserError(f"not JSON: {err.msg}", where=path) from None
    if not isinstance(data, dict) or data.get("schema") != "flowmend.library-generation/1":
        raise UserError("not a library generation (flowmend.library-generation/1)", where=path)
    try:
        library = load_library(data["specs"])
    except LibraryError as err:
        raise UserError(str(err)) from None
    if library.digest != data.get("digest"):
        raise UserError("its operators changed since the generation was written (digest "
                        "mismatch)", where=path)
    return library


def _run_train(args) -> int:
    import os
    import subprocess
    import sys

    from rich.console import Console

    from flowmend.meta import train

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    plan = _plan(args)
    console = Console(stderr=True)
    others = []
    if not args.worker:
        argv = [a for a in sys.argv[1:] if a != "--worker"]
        argv = _without_option(argv, "--workers")
        for _ in range(args.workers - 1):
            others.append(subprocess.Popen([sys.executable, "-m", "flowmend", *argv,
                                            "--worker", "--no-progress"]))
    def wait_for_others() -> None:
        failed = [p.wait() for p in others]
        if any(failed):
            console.print(f"{sum(1 for r in failed if r)} other worker(s) failed; the next run "
                          "retries their trials")

    try:
        with _MetaBar(console, disable=args.no_progress or args.worker) as bar:
            learned = train(plan, finalize=not args.worker, lead=not args.worker,
                            before_finalize=wait_for_others,
                            on_progress=bar.update)
    finally:
        for p in others:
            if p.poll() is None:
                p.terminate()
    if args.worker:
        return 0
    chosen = learned.search["chosen"]
    console.print(f"learned set-up: trial {chosen['trial']} (val U {chosen['val']:.3f}, "
                  f"used to choose); written to {plan.out / 'learned'}. `flowmend meta show "
                  f"{plan.out / 'learned'}` compares it with the default; `flowmend meta report "
                  f"--out {plan.out}` evaluates it on test, once.")
    return 0


def _without_option(argv: list[str], flag: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == flag:
            skip = True
            continue
        if a.startswith(flag + "="):
            continue
        out.append(a)
    return out


def _run_report(args) -> int:
    import os

    from rich.console import Console

    from flowmend.errors import UserError
    from flowmend.meta import report

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    if args.resamples < 100:
        raise UserError(f"--resamples must be at least 100, not {args.resamples}")
    console = Console(stderr=True)
    path = report(_plan(args), resamples=args.resamples, on_progress=console.print)
    console.print(f"wrote {path}")
    return 0


def _run_library(args) -> int:
    import os

    from rich.console import Console

    from flowmend.errors import UserError
    from flowmend.meta import evolve_library

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    for flag, value in (("--min-count", args.min_count), ("--macros", args.macros)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, not {value}")
    console = Console(stderr=True)
    generation = evolve_library(_plan(args), prune=args.prune, min_count=args.min_count,
                                limit=args.macros, on_progress=console.print)
    number = generation["generation"]
    console.print(f"generation {number}: library {generation['digest'][:12]}; admitted "
                  f"{', '.join(generation['admitted']) or 'none'}; deprecated "
                  f"{', '.join(d['operator'] for d in generation['deprecated']) or 'none'}. "
                  f"Decisions in {args.out}/library/decisions.jsonl; train on it with "
                  f"--library {args.out}/library/generation-{number}.json")
    return 0


def _run_show(args) -> int:
    import difflib

    from rich.console import Console
    from rich.table import Table

    from flowmend.meta import LearnedSetup

    learned = LearnedSetup.load(args.setup)
    console = Console()
    d, l = learned.default, learned.setup
    table = Table(title=f"learned set-up {l.digest()[:12]} against the default "
                        f"{d.digest()[:12]}", title_justify="left")
    for column in ("", "default", "learned"):
        table.add_column(column)
    for name, of in _SHOWN:
        a, b = of(d), of(l)
        table.add_row(name, a, b if b == a else f"[bold]{b}[/]")
    console.print(table)
    for name in ("choice_template", "text_template"):
        a, b = getattr(d.config.optimizer, name), getattr(l.config.optimizer, name)
        if a == b:
            console.print(f"{name}: unchanged")
        else:
            console.print(f"{name}:")
            console.print("".join(difflib.unified_diff(
                a.splitlines(True), b.splitlines(True), "default", "learned")), markup=False)
    if d.seed_source != l.seed_source:
        console.print(f"seed workflow: {d.seed} → {l.seed}")
        console.print("".join(difflib.unified_diff(
            d.seed_source.splitlines(True), l.seed_source.splitlines(True), d.seed, l.seed)),
            markup=False)
    lib_d, lib_l = d.config.operators, l.config.operators
    if lib_d.digest == lib_l.digest:
        console.print(f"operator library: unchanged ({len(lib_l.names())} operators, digest "
                      f"{lib_l.digest[:12]}); no macro was admitted")
    else:
        added = sorted(set(lib_l.names()) - set(lib_d.names()))
        removed = sorted(set(lib_d.names()) - set(lib_l.names()))
        console.print(f"operator library {lib_d.digest[:12]} → {lib_l.digest[:12]}: added "
                      f"{', '.join(added) or 'none'}; removed {', '.join(removed) or 'none'}")
        for name in added:
            console.print(f"  {name}: {lib_l.get(name).DESCRIPTION}")
    search, cost = learned.search, learned.cost
    if search.get("chosen"):
        console.print(f"chosen on val: trial {search['chosen']['trial']} (val U "
                      f"{search['chosen']['val']:.3f}; a figure used to choose, not a result)")
    if cost:
        console.print(f"search cost: {cost.get('trials')} trials, {cost.get('evaluations')} "
                      f"evaluations, {cost.get('tokens', 0):,} tokens, "
                      f"{cost.get('study_wall_s')} s wall")
    return 0


def _weights(name):
    return lambda s: f"{getattr(s.config.weights, name):.3g}"


_SHOWN = (
    ("seed workflow", lambda s: s.seed),
    ("iterations × proposals", lambda s: f"{s.config.iterations} × {s.config.proposals}"),
    ("mode", lambda s: s.config.mode),
    ("menu size", lambda s: str(s.config.optimizer.menu_size)),
    ("optimizer temperature", lambda s: f"{s.config.optimizer.temperature:.3g}"),
    ("α (no program)", _weights("alpha")),
    ("β (runtime error)", _weights("beta")),
    ("λ (cost per unit)", _weights("lam")),
    ("ν (violation)", _weights("nu")),
    ("μ (self-written checks)", _weights("mu")),
    ("budget", lambda s: ", ".join(f"{k} {v}" for k, v in s.config.budget.to_json().items()
                                   if v is not None)),
)


class _MetaBar(LiveBar):
    """Trials done, best so far on train-confirm, tokens spent, elapsed and time left."""

    def __init__(self, console, *, disable: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

        super().__init__(console, (
            TextColumn("[bold]meta"), BarColumn(), MofNCompleteColumn(),
            TextColumn("best confirm U {task.fields[best]}"),
            TextColumn("{task.fields[tokens]} tokens"), TimeElapsedColumn(),
            TextColumn("left {task.fields[eta]}"), TextColumn("{task.fields[stage]}")),
            disable=disable)

    def update(self, p) -> None:
        eta = p.eta_s
        self.show(total=p.trials_total, completed=p.trials_done,
                  best="–" if p.best_confirm is None else f"{p.best_confirm:.3f}",
                  tokens=f"{p.tokens:,}", stage=p.stage,
                  eta="–" if eta is None else f"{int(eta // 60)}:{int(eta % 60):02d}")
