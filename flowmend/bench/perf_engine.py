"""Engine performance: parse once, list the menu, apply patches, next to a bare libcst round trip.

Run ``python -m flowmend.bench.perf_engine`` (options: ``--repeat N``, ``--json``,
``--workflow PATH ...``). For each workflow it reports medians of: a bare
``libcst.parse_module(src).code``; `parse_workflow` (parse + positions + steps + data flow, paid
once per parent program); `menu`; and `apply_patch` on the already parsed parent, exactly as the
inner loop calls it (one patch per operator, the first the menu offers): transform, codegen and
the post-application checks (one parse, one compile, the free-name check, the diff), ending in
the new `Workflow`. Its steps and data flow are read when first used (the sandbox run reads the
step lines): the "+model" column adds that. The goal: applying costs at most 1.5x a bare parse +
codegen.
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

    from flowmend.engine import Applied, apply_patch, menu, parse_workflow
    from flowmend.engine._operator import check_result

    source = path.read_text(encoding="utf-8")
    bare_alone = _median_s(lambda: cst.parse_module(source).code, repeat)
    advance()
    parse = _median_s(lambda: parse_workflow(source, step_callees=step_callees), repeat)
    advance()
    wf = parse_workflow(source, step_callees=step_callees, path=path.name)
    items = menu(wf)
    menu_s = _median_s(lambda: menu(wf), repeat)
    advance()
    first_per_operator: dict[str, Any] = {}
    for item in items:
        first_per_operator.setdefault(item.patch.operator, item)
    # Each apply sample sits next to a bare sample of the same source, so that load from
    # elsewhere on the machine weighs on both sides of the ratio alike.
    pair_bare, apply_samples, check_samples, model_samples, per_operator = [], [], [], [], {}
    for name, item in sorted(first_per_operator.items()):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            cst.parse_module(source).code
            pair_bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            result = apply_patch(wf, item.patch)
            times.append(time.perf_counter() - start)
            if isinstance(result, Applied):
                start = time.perf_counter()
                result.workflow.steps  # noqa: B018 - what the candidate's run reads first
                model_samples.append(times[-1] + time.perf_counter() - start)
                start = time.perf_counter()
                check_result(wf, result.source)
                check_samples.append(time.perf_counter() - start)
        per_operator[name] = statistics.median(times)
        apply_samples.extend(times)
    advance()
    apply_s = statistics.median(apply_samples) if apply_samples else float("nan")
    check_s = statistics.median(check_samples) if check_samples else float("nan")
    model_s = statistics.median(model_samples) if model_samples else float("nan")
    bare = statistics.median(pair_bare) if pair_bare else bare_alone
    return {
        "workflow": path.name,
        "lines": source.count("\n"),
        "steps": len(wf.steps),
        "menu_items": len(items),
        "bare_parse_codegen_s": bare,
        "parse_workflow_s": parse,
        "menu_s": menu_s,
        "apply_s": apply_s,
        "apply_checks_s": check_s,
        "apply_over_bare": apply_s / bare if bare else float("nan"),
        "apply_and_model_s": model_s,
        "apply_and_model_over_bare": model_s / bare if bare else float("nan"),
        "apply_by_operator_s": per_operator,
    }


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


if __name__ == "__main__":
    sys.exit(main())
