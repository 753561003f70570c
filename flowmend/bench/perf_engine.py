"""Engine performance: parse once, list the menu, apply patches, next to a bare libcst round trip.

Run ``flowmend perf engine`` or ``python -m flowmend.bench.perf_engine`` (options:
``--repeat N``, ``--json``, ``--workflow PATH ...``). For each workflow it reports medians of: a bare
``libcst.parse_module(src).code``; `parse_workflow` (parse + positions + steps + data flow, paid
once per parent program); `menu`; and `apply_patch` on the already parsed parent, exactly as the
inner loop calls it (one patch per operator, the first the menu offers): transform, codegen and
the post-application checks (one parse, one compile, the free-name check, the diff), ending in
the new `Workflow`. Its steps and data flow are read when first used (the sandbox run reads the
step lines): the "+model" column adds that. The goal: applying costs at most 1.5x a bare parse +
codegen.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

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


def measure(path: Any, step_callees: tuple[str, ...], repeat: int, advance=lambda: None, *,
            entry: str = "solve", conventions=None) -> dict:
    """Medians (seconds) of each engine operation on one workflow, read with `step_callees`
    or, when given, the step `conventions` (a project config's)."""
    import libcst as cst

    from flowmend.engine import Applied, apply_patch, menu, parse_workflow
    from flowmend.engine._operator import check_result

    source = path.read_text(encoding="utf-8")
    bare_alone = _median_s(lambda: cst.parse_module(source).code, repeat)
    advance()
    reading = {"entry": entry, "step_callees": step_callees, "conventions": conventions}
    parse = _median_s(lambda: parse_workflow(source, path=str(path), **reading), repeat)
    advance()
    wf = parse_workflow(source, path=str(path), **reading)
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


def default_targets() -> list[tuple[Any, tuple[str, ...]]]:
    """(file, step callees) of every shipped seed, the 150-line pipeline included."""
    from importlib import resources

    seeds = resources.files("flowmend.seeds")
    return [(seeds / name, callees) for name, callees in DEFAULT_WORKFLOWS]


if __name__ == "__main__":
    from flowmend.cli.perf import main

    sys.exit(main(["engine", *sys.argv[1:]]))
