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

    python -m flowmend.bench.perf_loop [--tasks 32] [--iterations 1] [--proposals 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=32, help="HumanEval tasks run at once")
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--proposals", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=256, help="program calls' max_tokens")
    parser.add_argument("--workflow", default=None, help="seed workflow (default plan_then_code)")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from flowmend.bench.datasets import humaneval
    from flowmend.engine import Budget, RepairConfig, repair
    from flowmend.llm import Broker, ModelConfig, RecordingBackend, open_backend
    from flowmend.sandbox import Sandbox

    console = Console()
    from flowmend import seeds

    seed = Path(args.workflow).read_text() if args.workflow else seeds.load("plan_then_code")
    tasks = [p.task for p in humaneval()][: args.tasks]
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "requests.jsonl"
        with console.status(f"loading {args.model}"):
            engine = open_backend(ModelConfig(kind="vllm", model=args.model))
        backend = RecordingBackend(engine, record)
        engine.record_workload()
        broker = Broker(backend)
        config = RepairConfig(iterations=args.iterations, proposals=args.proposals,
                              budget=Budget(calls=60, tokens=60_000, wall_s=3600),
                              program_params={"max_tokens": args.max_tokens})
        with Sandbox() as sandbox:
            started = time.perf_counter()
            with console.status(f"{len(tasks)} repairs in flight"), \
                    ThreadPoolExecutor(max_workers=len(tasks)) as pool:
                results = list(pool.map(
                    lambda t: repair(seed, t, program=broker, optimizer=broker, sandbox=sandbox,
                                     config=config), tasks))
            loop_wall = time.perf_counter() - started
        stats = broker.stats()
        broker.close()
        engine_loop = engine.engine_stats()
        requests = [json.loads(line) for line in record.read_text().splitlines()]

        from flowmend.llm import Request

        reqs = [Request.from_json(r["request"]) for r in requests]
        loop_tokens = sum(r["completion"]["completion_tokens"] for r in requests)
        with console.status(f"raw vLLM: {len(reqs)} requests at once"):
            raw = engine.raw_throughput()
        engine.record_workload(on=False)
        raw_wall, raw_tokens = raw["wall_s"], raw["completion_tokens"]
        width = max(1, round(engine_loop["mean_running"]))
        with console.status(f"raw vLLM: {len(reqs)} requests, at most {width} in flight"), \
                ThreadPoolExecutor(max_workers=width) as pool:
            started = time.perf_counter()
            capped = list(pool.map(lambda r: engine.generate([r])[0], reqs))
            capped_wall = time.perf_counter() - started
        capped_tokens = sum(c.completion_tokens for c in capped)
        engine.close()

    loop_tps = loop_tokens / loop_wall
    raw_tps = raw_tokens / raw_wall
    capped_tps = capped_tokens / capped_wall
    figures = {
        "tasks": len(tasks),
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
    table = Table(title="inner loop vs raw vLLM, same requests, same engine")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, str(value))
    console.print(table)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
