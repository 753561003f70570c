"""`flowmend repair`: the main job, one closed-loop repair of one workflow on one task."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from flowmend._files import write_atomically
from flowmend.cli._common import (add_model_options, add_workflow_options, model_configs,
                                  read_text, workflow_options)
from flowmend.errors import UserError


def register(sub) -> None:
    repair = sub.add_parser(
        "repair",
        help="repair a workflow on one task with a weak local optimizer",
        description=(
            "Run WORKFLOW.py on a task in the sandbox, score its output with the visible "
            "checks, and let the optimizer model pick typed edits from a menu, for up to K "
            "iterations of M proposals, under a hard budget. Writes the final workflow, its "
            "diff against the seed, result.json and a JSONL trace of every call, proposal "
            "and verdict into --out."
        ),
    )
    repair.add_argument("workflow", metavar="WORKFLOW.py", help="the seed workflow")
    which = repair.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", metavar="SUITE/ID",
                       help="a benchmark task: humaneval/HumanEval/0, mbpp/11, "
                            "mbpp-sanitized/Mbpp/11 (visible checks only)")
    which.add_argument("--task-file", metavar="TASK.json",
                       help='your own task: {"task_id", "prompt", "entry_point", '
                            '"visible_tests": ["assert ...", ...]}')
    repair.add_argument("--iterations", type=int, default=3, metavar="K",
                        help="optimizer rounds (default 3)")
    repair.add_argument("--proposals", type=int, default=3, metavar="M",
                        help="edits proposed per round (default 3)")
    repair.add_argument("--mode", choices=("prompt", "structure"), default="structure",
                        help="prompt: prompt edits only; structure: prompt and structure edits")
    repair.add_argument("--budget-tokens", type=int, default=30_000, metavar="T",
                        help="prompt + completion tokens, program and optimizer (default 30000)")
    repair.add_argument("--budget-calls", type=int, default=40, metavar="C",
                        help="LLM calls (default 40)")
    repair.add_argument("--budget-cost", type=float, default=None, metavar="U",
                        help="cost units (default: no cap)")
    repair.add_argument("--budget-wall-s", type=float, default=900.0, metavar="S",
                        help="wall seconds for the whole repair (default 900)")
    repair.add_argument("--max-tokens", type=int, default=384,
                        help="default max_tokens of the workflow's own calls (default 384)")
    repair.add_argument("--seed", type=int, default=0, help="seeds the menu sampling")
    repair.add_argument("--no-reuse", action="store_true",
                        help="send every greedy call, even one whose exact request this repair "
                             "already had answered (docs/loop.md)")
    repair.add_argument("--out", metavar="DIR", default=None,
                        help="where to write the results (default runs/repair-<task>)")
    repair.add_argument("--setup", metavar="DIR", default=None,
                        help="a learned set-up directory (`flowmend meta train`'s DIR/learned): "
                             "its loop shape, mode, optimizer, verifier weights and library "
                             "replace --iterations, --proposals and --mode; the budget, the "
                             "workflow options and the models still come from the flags")
    repair.add_argument("--json", action="store_true",
                        help="print the result as one JSON object")
    add_workflow_options(repair)
    add_model_options(repair)
    repair.set_defaults(run=run_repair, starts_processes=True)


def load_task(spec: str | None, path: str | None):
    """The `Task` a `--task` or `--task-file` names; visible checks only."""
    from flowmend.task import Task

    if path is not None:
        text = read_text(path, "task file")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"not JSON: {err.msg}", where=f"{path}:{err.lineno}:{err.colno}") from None
        if not isinstance(data, dict):
            raise UserError("a task file holds one JSON object", where=path)
        missing = [k for k in ("prompt", "entry_point") if k not in data]
        if missing:
            raise UserError(f"missing field(s): {', '.join(missing)}", where=path)
        if not isinstance(data.get("visible_tests", []), list):
            raise UserError("visible_tests must be a list of strings", where=path)
        data.setdefault("task_id", Path(path).stem)
        try:
            return Task.from_json(data)
        except (ValueError, TypeError) as err:
            raise UserError(str(err), where=path) from None
    from flowmend.bench.datasets import task_by_id

    return task_by_id(spec)


def run_repair(args: argparse.Namespace) -> int:
    from rich.console import Console

    from flowmend.engine._loop import RepairConfig, repair
    from flowmend.engine._runtime import Budget

    console = Console(stderr=args.json)
    seed_source = read_text(args.workflow)
    task = load_task(args.task, args.task_file)
    try:
        budget = Budget(calls=args.budget_calls, tokens=args.budget_tokens,
                        cost=args.budget_cost, wall_s=args.budget_wall_s)
        options = workflow_options(args, args.workflow)
        config = RepairConfig(
            iterations=args.iterations, proposals=args.proposals, mode=args.mode,
            budget=budget, entry=options["entry"],
            step_callees=tuple(options.get("step_callees", ("llm",))),
            conventions=tuple(options.get("conventions", ())),
            program_params={"max_tokens": args.max_tokens}, rng_seed=args.seed,
            reuse_greedy=not args.no_reuse,
        )
        if args.setup:
            from dataclasses import replace

            from flowmend.meta import LearnedSetup

            learned = LearnedSetup.load(args.setup, model=args.model)
            config = replace(learned.setup.config, budget=budget, entry=config.entry,
                             step_callees=config.step_callees, rng_seed=args.seed,
                             reuse_greedy=learned.setup.config.reuse_greedy and not args.no_reuse)
    except ValueError as err:
        raise UserError(str(err)) from None
    if args.max_tokens < 1:
        raise UserError("--max-tokens must be positive")
    # Read the seed before loading a model: a bad workflow fails in a second, not a minute.
    from flowmend.engine._workflow import parse_workflow

    parse_workflow(seed_source, entry=config.entry, step_callees=config.step_callees,
                   conventions=config.conventions or None, path=args.workflow)
    out = Path(args.out or Path("runs") / f"repair-{_slug(task.task_id)}")
    out.mkdir(parents=True, exist_ok=True)
    program_cfg, optimizer_cfg = model_configs(args)

    from flowmend.llm import open_models
    from flowmend.sandbox import Sandbox

    # vLLM logs at INFO to stdout, from its engine process too: keep it to errors, and with
    # --json send everything but the one JSON object to stderr at the descriptor level.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    view = _LiveView(console, config, task.task_id, enabled=not args.json)
    with _stdout_to_stderr(args.json):
        with view.status(f"loading {program_cfg.model} ({program_cfg.kind})"):
            models = open_models(program_cfg, optimizer_cfg)
        with models, Sandbox() as sandbox, view:
            result = repair(
                seed_source, task, program=models.program, optimizer=models.optimizer,
                sandbox=sandbox, config=config, trace_path=out / "trace.jsonl",
                on_event=view.event,
            )
    data = result.to_json()
    write_atomically(out / "final_workflow.py", result.final_source)
    write_atomically(out / "workflow.diff", result.diff)
    write_atomically(out / "output.py", result.output + ("\n" if result.output else ""))
    write_atomically(out / "result.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
    if args.json:
        brief = {k: v for k, v in data.items() if k not in ("candidates", "final_source")}
        print(json.dumps(brief, sort_keys=True))
    else:
        _print_result(console, result, out)
    return 0 if result.status != "error" else 1


@contextlib.contextmanager
def _stdout_to_stderr(active: bool):
    """While active, file descriptor 1 (inherited by engine processes) points at stderr."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "task"


class _LiveView:
    """Iteration, candidates, scores and tokens against the budget, updated as events arrive."""

    def __init__(self, console, config, task_id: str, *, enabled: bool):
        self.console = console
        self.config = config
        self.task_id = task_id
        self.enabled = enabled and console.is_terminal
        self.quiet = not enabled
        self.rows: list[tuple[str, ...]] = []
        self.tokens = 0
        self.calls = 0
        self.iteration = 0
        self._live = None
        self._t0 = time.monotonic()

    def status(self, text: str):
        import contextlib

        if self.quiet:
            return contextlib.nullcontext()
        return self.console.status(text)

    def __enter__(self):
        if self.enabled:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.__exit__(*exc)

    def event(self, e: Any) -> None:  # a flowmend.engine TraceEvent
        from flowmend.engine import LlmEvent, VerdictEvent

        if isinstance(e, LlmEvent) and e.prompt_tokens is not None:
            self.calls += 1
            self.tokens += e.prompt_tokens + (e.completion_tokens or 0)
        elif isinstance(e, VerdictEvent):
            self.iteration = e.iteration
            row = (
                str(e.iteration), str(e.index), e.label or "(incumbent)",
                f"{e.score:+.3f}", f"{e.passed}/{e.total}", e.kind,
                "✓" if e.selected else "",
            )
            self.rows.append(row)
            if not self.enabled and not self.quiet:
                self.console.print("  ".join(row))
        if self._live is not None:
            self._live.update(self._render())

    def _render(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"repair {self.task_id}", expand=False)
        for name in ("iter", "#", "edit", "score", "visible", "verdict", "kept"):
            table.add_column(name)
        for row in self.rows[-14:]:
            table.add_row(*row)
        budget = self.config.budget
        total = budget.tokens or max(self.tokens, 1)
        line = Text(
            f"iteration {self.iteration}/{self.config.iterations}   calls {self.calls}"
            f"/{budget.calls or '∞'}   tokens {self.tokens}/{budget.tokens or '∞'}   "
            f"{time.monotonic() - self._t0:.0f}s"
        )
        return Group(table, line, ProgressBar(total=total, completed=min(self.tokens, total),
                                              width=60))


def _print_result(console, result, out: Path) -> None:
    from rich.panel import Panel
    from rich.syntax import Syntax

    colour = "green" if result.passed_visible else ("red" if result.status == "error" else "yellow")
    if result.diff:
        console.print(Syntax(result.diff, "diff", theme="ansi_dark", background_color="default"))
    else:
        console.print("[dim]the seed workflow was kept unchanged[/]")
    if result.output:
        console.print(Panel(Syntax(result.output, "python", theme="ansi_dark",
                                   background_color="default"), title="final output"))
    lines = [
        f"[bold {colour}]{result.status}[/] (stopped by {result.stopped_by})",
        f"visible checks: {'passed' if result.passed_visible else 'not passed'}"
        + (f" ({result.feedback.passed}/{result.feedback.total})" if result.feedback else ""),
        f"iterations {result.iterations}, calls {result.calls}, tokens {result.tokens}, "
        f"{result.wall_s:.0f}s",
        f"proposals: {result.proposals.tried} tried, {result.proposals.applied} applied, "
        f"{result.proposals.invalid} invalid, {result.proposals.not_applicable} not applicable, "
        f"{result.proposals.rejected} outside the menu, {result.proposals.duplicate} duplicate, "
        f"{result.proposals.budget_cut} cut by the budget, {result.proposals.no_code} without code",
        f"written: {out}/final_workflow.py, workflow.diff, output.py, result.json, trace.jsonl",
    ]
    if result.error:
        lines.insert(1, f"[red]{result.error}[/]")
    console.print("\n".join(lines))
    sys.stdout.flush()
