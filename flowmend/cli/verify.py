"""Command-line verbs of the verifier: `flowmend checks` and `flowmend verify`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flowmend.errors import UserError


def register(sub) -> None:
    """Add this package's verbs to the `flowmend` parser."""
    checks = sub.add_parser(
        "checks",
        help="show the visible checks a task's docstring yields",
        description=(
            "Turn the examples in a task's docstring (doctest '>>> f(1)' lines and inline "
            "'f(1) == 2' / 'f(1) ➞ 2' / 'f(1) returns 2' lines) into assert snippets, the "
            "visible checks a deployment can run. Examples that are not unambiguous Python "
            "literals are skipped; --all shows them and why."
        ),
    )
    source = checks.add_mutually_exclusive_group(required=True)
    source.add_argument("--task", type=Path, metavar="FILE", help="a task as JSON (task_id, prompt, entry_point, ...)")
    source.add_argument("--prompt", type=Path, metavar="FILE", help="a file holding the prompt text; needs --entry-point")
    checks.add_argument("--entry-point", metavar="NAME", help="the function the examples call (with --prompt)")
    checks.add_argument("--all", action="store_true", help="also list skipped examples with the reason")
    checks.add_argument("--json", action="store_true", help="print JSON instead of a table")
    checks.set_defaults(run=_run_checks)

    verify = sub.add_parser(
        "verify",
        help="verify one workflow output against a task's visible checks",
        description=(
            "Extract the code from OUTPUT (a model's answer or a program), compile it, check "
            "the entry point and its signature, run the task's visible checks in the sandbox "
            "and print the feedback and the score S_F. Exit status 0 when every visible check "
            "passes, 1 otherwise."
        ),
    )
    verify.add_argument("task", type=Path, help="the task as JSON (task_id, prompt, entry_point, visible_tests)")
    verify.add_argument("output", help="file holding the workflow's output text, or - for stdin")
    verify.add_argument("--weights", type=Path, metavar="FILE", help="score weights as JSON (alpha, beta, lam, nu, mu)")
    verify.add_argument("--self-check", action="append", default=[], metavar="SNIPPET",
                        help="an extra test the workflow wrote for itself (repeatable); scored apart")
    verify.add_argument("--timeout", type=float, default=3.0, metavar="S", help="seconds per check (default 3)")
    verify.add_argument("--json", action="store_true", help="print the Feedback as JSON")
    verify.set_defaults(run=_run_verify, starts_processes=True)


def _read_json(path: Path) -> object:
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"cannot read: {err.strerror}", where=str(path)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"not JSON: {err.msg} at line {err.lineno}, column {err.colno}", where=str(path)) from None


def _load_task(path: Path):
    from flowmend.task import Task

    data = _read_json(path)
    if not isinstance(data, dict):
        raise UserError("a task must be a JSON object", where=str(path))
    missing = [k for k in ("task_id", "prompt", "entry_point") if k not in data]
    if missing:
        raise UserError(f"the task lacks {', '.join(missing)}", where=str(path))
    try:
        return Task.from_json(data)
    except (ValueError, TypeError) as err:
        raise UserError(str(err), where=str(path)) from None


def _run_checks(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from flowmend.verifier import docstring_examples

    if args.task is not None:
        task = _load_task(args.task)
        prompt, entry_point = task.prompt, task.entry_point
    else:
        if not args.entry_point:
            raise UserError("--prompt needs --entry-point NAME")
        try:
            prompt = args.prompt.read_text()
        except OSError as err:
            raise UserError(f"cannot read: {err.strerror}", where=str(args.prompt)) from None
        entry_point = args.entry_point
    examples = [e for e in docstring_examples(prompt, entry_point) if args.all or e.check is not None]
    if args.json:
        print(json.dumps([e.__dict__ for e in examples], indent=2))
        return 0
    table = Table(title=f"visible checks for {entry_point}", show_lines=False)
    table.add_column("line", justify="right")
    table.add_column("check / skipped example" if args.all else "check")
    if args.all:
        table.add_column("why skipped", style="dim")
    for e in examples:
        table.add_row(str(e.line), e.check or e.source, *([e.skipped] if args.all else []))
    console = Console()
    console.print(table)
    console.print(f"{sum(e.check is not None for e in examples)} check(s)")
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from rich.console import Console

    from flowmend.sandbox import Sandbox
    from flowmend.verifier import ScoreWeights, feedback, score

    task = _load_task(args.task)
    weights = ScoreWeights()
    if args.weights is not None:
        weights = ScoreWeights.from_dict(_read_json(args.weights), where=str(args.weights))
    if args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")
    if args.output == "-":
        output = sys.stdin.read()
    else:
        try:
            output = Path(args.output).read_text()
        except OSError as err:
            raise UserError(f"cannot read: {err.strerror}", where=args.output) from None
    with Sandbox(workers=1) as sandbox:
        fb = feedback(task, output, None, sandbox, self_checks=args.self_check,
                      test_timeout_s=args.timeout)
    if args.json:
        print(fb.dumps())
    else:
        console = Console(highlight=False)
        colour = "green" if fb.ok else "red"
        console.print(f"[bold {colour}]{fb.kind}[/]  score {score(fb, weights):.4f}  ({task.task_id})")
        console.print(fb.summary(max_chars=4000), markup=False)
    return 0 if fb.ok else 1
