"""Throughput of the inner loop against raw vLLM on the same prompts, in one run.

N HumanEval tasks go through `repair` concurrently on the embedded model (one engine, one
broker): the engine's achieved generation throughput inside the loop is its completion tokens
over the loop's wall time. Then every request the loop sent is sent again to the same vLLM
engine, all at once (`VLLMBackend.raw_throughput`: same token ids, same sampling parameters,
no flowmend in between): that is raw batched throughput. The ratio says how well the loop keeps the engine
fed; the rest of the loop's wall time is spent outside the model (sandbox, verifier, engine
waits on dependencies between calls).

A loop cannot send all its requests at once: a task's code call needs its plan, a candidate
needs the optimizer's choice. So the same requests are also sent a third time, raw, with at
most as many in flight as the loop kept running on average (vLLM's engine-step statistics):
the ratio against that says how much of the gap is flowmend's and how much is the workload's
limited parallelism.

    flowmend perf loop [--tasks 32] [--iterations 1] [--proposals 2]   (or python -m flowmend.bench.perf_loop)
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from typing import Any


def measure(*, tasks: int = 32, iterations: int = 1, proposals: int = 2, max_tokens: int = 256,
            workflow: str | None = None, model: str = "smollm2",
            on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the loop on `tasks` HumanEval tasks at once, then the same requests raw; the figures."""
    from flowmend import seeds
    from flowmend.bench.datasets import humaneval
    from flowmend.engine import Budget, RepairConfig, repair
    from flowmend.llm import Broker, ModelConfig, RecordingBackend, Request, open_backend
    from flowmend.sandbox import Sandbox

    stage = on_stage or (lambda _text: None)
    seed = Path(workflow).read_text() if workflow else seeds.load("plan_then_code")
    problems = [p.task for p in humaneval()][:tasks]
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "requests.jsonl"
        stage(f"loading {model}")
        engine = open_backend(ModelConfig(kind="vllm", model=model))
        backend = RecordingBackend(engine, record)
        engine.record_workload()
        broker = Broker(backend)
        config = RepairConfig(iterations=iterations, proposals=proposals,
                              budget=Budget(calls=60, tokens=60_000, wall_s=3600),
                              program_params={"max_tokens": max_tokens})
        with Sandbox() as sandbox:
            started = time.perf_counter()
            stage(f"{len(problems)} repairs in flight")
            with ThreadPoolExecutor(max_workers=len(problems)) as pool:
                results = list(pool.map(
                    lambda t: repair(seed, t, program=broker, optimizer=broker, sandbox=sandbox,
                                     config=config), problems))
            loop_wall = time.perf_counter() - started
        stats = broker.stats()
        broker.close()
        engine_loop = engine.engine_stats()
        requests = [json.loads(line) for line in record.read_text().splitlines()]
        reqs = [Request.from_json(r["request"]) for r in requests]
        loop_tokens = sum(r["completion"]["completion_tokens"] for r in requests)
        stage(f"raw vLLM: {len(reqs)} requests at once")
        raw = engine.raw_throughput()
        engine.record_workload(on=False)
        raw_wall, raw_tokens = raw["wall_s"], raw["completion_tokens"]
        width = max(1, round(engine_loop["mean_running"]))
        stage(f"raw vLLM: {len(reqs)} requests, at most {width} in flight")
        with ThreadPoolExecutor(max_workers=width) as pool:
            started = time.perf_counter()
            capped = list(pool.map(lambda r: engine.generate([r])[0], reqs))
            capped_wall = time.perf_counter() - started
        capped_tokens = sum(c.completion_tokens for c in capped)
        engine.close()

    loop_tps = loop_tokens / loop_wall
    raw_tps = raw_tokens / raw_wall
    capped_tps = capped_tokens / capped_wall
    return {
        "tasks": len(problems),
        "requests": len(reqs),
        "engine_batches": stats.batches,
        "mean_batch": round(stats.mean_batch, 2),
        "median_batch": statistics.median(stats.batch_sizes) if stats.batch_sizes else 0,
        "loop_wall_s": round(loop_wall, 2),
        "loop_completion_tokens": loop_tokens,
        "loop_tokens_per_s": round(loop_tps, 1),
        "engine_busy_s": round(stats.busy_s, 2),
        "engine_busy_tokens_per_s": round(loop_tokens / stats.busy_s, 1) if stats.busy_s else None,
        "outside_model_share": round(1 - stats.busy_s / loop_wall, 3),
        "raw_wall_s": round(raw_wall, 2),
        "raw_completion_tokens": raw_tokens,
        "raw_tokens_per_s": round(raw_tps, 1),
        "loop_over_raw": round(loop_tps / raw_tps, 3),
        "loop_mean_running_requests": engine_loop["mean_running"],
        "raw_capped_in_flight": width,
        "raw_capped_wall_s": round(capped_wall, 2),
        "raw_capped_tokens_per_s": round(capped_tps, 1),
        "loop_over_raw_capped": round(loop_tps / capped_tps, 3),
        "solved": sum(r.passed_visible for r in results),
    }


if __name__ == "__main__":  # vLLM starts its engine process with spawn: keep this guard
    import sys

    from flowmend.cli.perf import main

    sys.exit(main(["loop", *sys.argv[1:]]))
