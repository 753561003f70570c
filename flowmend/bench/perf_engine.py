"""Engine performance: parse once, list the menu, apply patches, next to a bare libcst round trip.

Run ``python -m flowmend.bench.perf_engine`` (options: ``--repeat N``, ``--json``,
``--workflow PATH ...``). For each workflow it reports medians of: a bare
``libcst.parse_module(src).code``; `parse_workflow` (parse + positions + steps + data flow, paid
once per parent program); `menu`; and applying one patch to the already parsed parent (one
patch per operator, the first the menu offers), split into the operator's transform + codegen
and the post-application checks. The goal: applying costs at most 2x a bare parse + codegen.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "workflows"
# (file, step callees): every seed, and the 150-line pipeline.
DEFAULT_WORKFLOWS = (
    ("single_shot.py", ("llm",)),
    ("plan_then_code.py", ("llm",)),
    ("generate_then_review.py", ("llm",)),
    ("async_plan_then_code.py", ("llm",)),
    ("class_based.py", ("self.generate",)),
    ("long_pipeline.py", ("llm",)),
)


def _median_s(fn: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure(path: Path, step_callees: tuple[str, ...], repeat: int, advance=lambda: None) -> dict:
    """Medians (seconds) of each engine operation on one workflow."""
    import libcst as cst

    from flowmend.engine import _operator as registry
    from flowmend.engine import Applied, apply_patch, menu, parse_workflow

    source = path.read_text(encoding="utf-8")
    bare = _median_s(lambda: cst.parse_module(source).code, repeat)
    advance()
    parse = _median_s(lambda: parse_workflow(source, step_callees=step_callees), repeat)
    advance()
    wf = parse_workflow(source, step_callees=step_callees, path=path.name)
    items = menu(wf)
    menu_s = _median_s(lambda: menu(wf), repeat)
    advance()
    # The engine's own cost of an edit: swap one call (path copy) and generate the code.
    call = wf.steps[-1].call
    edited = call.with_changes(args=[*call.args, cst.Arg(cst.Integer("1"), keyword=cst.Name("n"))])
    floor = _median_s(lambda: wf.replace({call: edited}).code, repeat)
    first_per_operator: dict[str, Any] = {}
    for item in items:
        first_per_operator.setdefault(item.patch.operator, item)
    apply_samples, check_samples, fast_samples, per_operator = [], [], [], {}
    for name, item in sorted(first_per_operator.items()):
        times, checks = [], []
        fast_samples.extend(_fast_apply_samples(wf, item.patch, repeat))
        for _ in range(repeat):
            start = time.perf_counter()
            result = apply_patch(wf, item.patch)
            times.append(time.perf_counter() - start)
            if isinstance(result, Applied):
                start = time.perf_counter()
                registry.check_result(wf, result.source)
                checks.append(time.perf_counter() - start)
        per_operator[name] = statistics.median(times)
        apply_samples.extend(times)
        check_samples.extend(checks)
    advance()
    apply_s = statistics.median(apply_samples) if apply_samples else float("nan")
    check_s = statistics.median(check_samples) if check_samples else float("nan")
    fast_s = statistics.median(fast_samples) if fast_samples else float("nan")
    return {
        "workflow": path.name,
        "lines": source.count("\n"),
        "steps": len(wf.steps),
        "menu_items": len(items),
        "bare_parse_codegen_s": bare,
        "parse_workflow_s": parse,
        "menu_s": menu_s,
        "replace_codegen_s": floor,
        "apply_s": apply_s,
        "apply_checks_s": check_s,
        "apply_transform_s": apply_s - check_s if check_samples else float("nan"),
        "apply_over_bare": apply_s / bare if bare else float("nan"),
        "apply_fast_checks_s": fast_s,
        "apply_fast_checks_over_bare": fast_s / bare if bare else float("nan"),
        "apply_by_operator_s": per_operator,
    }


def _fast_apply_samples(wf, patch, repeat: int) -> list[float]:
    """The same application with the checks done by CPython instead of libcst: the operator's
    transform and codegen, then `compile`, symbol-table free names (`engine._names`) and the
    diff. What apply would cost with those checks; nothing here changes what apply does."""
    from flowmend.engine import _operator as registry
    from flowmend.engine._names import free_names

    cls = registry.get(patch.operator)
    op, args = cls(), cls.parse_args(patch.args)
    allowed = wf.cached("perf:free-names", lambda: free_names(wf.source))
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            source = op.transform(wf, patch.target, args).code
        except registry.Refusal:
            return []
        compile(source, "<workflow>", "exec", dont_inherit=True)
        _ = free_names(source) - allowed
        registry.unified_diff(wf.source, source)
        samples.append(time.perf_counter() - start)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowmend.bench.perf_engine",
        description="Time the engine (parse, menu, apply) against a bare libcst parse + codegen.",
    )
    parser.add_argument("--repeat", type=int, default=7, help="samples per median (default 7)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--workflow", action="append", metavar="PATH",
        help="time this workflow instead of the examples (repeatable; step callee: llm)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.workflow:
        targets = [(Path(p), ("llm",)) for p in args.workflow]
    else:
        targets = [(EXAMPLES_DIR / name, callees) for name, callees in DEFAULT_WORKFLOWS]
    for path, _ in targets:
        if not path.is_file():
            print(f"error: {path}: no such workflow file", file=sys.stderr)
            return 2

    from rich.console import Console
    from rich.progress import Progress

    from flowmend.errors import UserError

    rows = []
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("timing the engine", total=len(targets) * 4)
        for path, callees in targets:
            try:
                rows.append(measure(path, callees, args.repeat, lambda: progress.advance(task)))
            except UserError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _print_table(rows, args.repeat)
    return 0


def _print_table(rows: list[dict], repeat: int) -> None:
    from rich.console import Console
    from rich.table import Table

    ms = lambda s: f"{s * 1000:.1f}"  # noqa: E731
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    table = Table(
        title=f"engine timings in ms, median of {repeat} (load average {load} on "
        f"{os.cpu_count()} cores)",
        title_justify="left",
    )
    columns = ("workflow", "lines", "steps", "items", "bare", "parse", "menu", "edit",
               "apply", "checks", "apply/bare", "apply*", "apply*/bare")
    for column in columns:
        table.add_column(column, justify="left" if column == "workflow" else "right")
    for r in rows:
        table.add_row(
            r["workflow"].removesuffix(".py"), str(r["lines"]), str(r["steps"]),
            str(r["menu_items"]), ms(r["bare_parse_codegen_s"]), ms(r["parse_workflow_s"]),
            ms(r["menu_s"]), ms(r["replace_codegen_s"]), ms(r["apply_s"]),
            ms(r["apply_checks_s"]), f"{r['apply_over_bare']:.1f}x",
            ms(r["apply_fast_checks_s"]), f"{r['apply_fast_checks_over_bare']:.1f}x",
        )
    console = Console(width=max(Console().width, 130))  # a table this wide is no use wrapped
    console.print(table)
    console.print(
        "bare: libcst parse + codegen; parse: parse_workflow (once per parent); menu: all "
        "items; edit: Workflow.replace of one call + codegen; apply: one patch on the parsed "
        "parent, median over one patch per operator; checks: the operators' post-application "
        "checks inside apply (re-parse, compile, free names); apply*: the same transforms with "
        "those checks done by compile + symtable (engine._names) instead of libcst."
    )


if __name__ == "__main__":
    sys.exit(main())
