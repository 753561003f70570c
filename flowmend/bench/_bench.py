"""`flowmend bench`: validate the arguments, open the models and the sandbox, run, keep results.

Everything a user can get wrong is checked before anything is written: the methods, the seed
workflow, the suite and split, the backend's options. Then the run folder is opened (or
resumed), the models and sandbox start, and `run_jobs` does the work, reporting its progress
to the caller.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from flowmend import seeds
from flowmend.bench import splits
from flowmend.bench.splits import task_order
from flowmend.bench._runner import (BenchProgress, RunAborted, RunStats, hidden_utility_with,
                                    run_jobs, write_samples)
from flowmend.bench._store import RunStore, read_results
from flowmend.bench.methods import Method, load_methods
from flowmend.errors import UserError


# Jobs in flight: the wider the window, the wider the engine's batches (docs/bench.md).
DEFAULT_CONCURRENCY = 64


@dataclass(frozen=True)
class BenchPlan:
    """What a bench run will do, decided and checked before anything starts."""

    suite: str
    split: str
    split_scheme: str
    methods: tuple[Method, ...]
    problems: tuple[Any, ...]
    seed_workflow: str
    seed_source: str
    budget: dict[str, Any]
    backend: str
    model: str
    optimizer_model: str
    replay: str | None
    record: str | None
    base_url: str | None
    seed: int
    limit: int | None
    out: Path
    raw_baseline: bool = False  # a measurement, not part of the identity

    def identity(self) -> dict[str, Any]:
        """The arguments that decide the results; a resume must repeat them exactly."""
        return {
            "suite": self.suite,
            "split": self.split,
            "split_scheme": self.split_scheme,
            "limit": self.limit,
            "tasks": len(self.problems),
            "methods": [m.to_json() for m in self.methods],
            "seed_workflow": self.seed_workflow,
            "seed_workflow_sha256": hashlib.sha256(self.seed_source.encode()).hexdigest()[:16],
            "budget": self.budget,
            "backend": self.backend,
            "model": self.model,
            "optimizer_model": self.optimizer_model,
            "replay": self.replay,
            "base_url": self.base_url,
            "seed": self.seed,
        }


def task_id(problem: Any) -> str:
    return problem.task.task_id


def hidden_tests(problem: Any):
    return problem.hidden_tests


def load_problems(suite: str) -> list[Any]:
    """The suite's problems (Task plus hidden tests), from the datasets module."""
    from flowmend.bench import datasets

    return list(datasets.load(suite))


def plan_from_args(args) -> BenchPlan:
    for flag, value, least in (("--limit", args.limit, 1), ("--concurrency", args.concurrency, 1),
                               ("--budget-calls", args.budget_calls, 1),
                               ("--budget-tokens", args.budget_tokens, 1)):
        if value is not None and value < least:
            raise UserError(f"{flag} must be at least {least}, not {value}")
    if args.budget_wall_s is not None and args.budget_wall_s <= 0:
        raise UserError(f"--budget-wall-s must be positive, not {args.budget_wall_s}")
    if args.split_scheme == "conventional" and not args.suite.startswith("mbpp"):
        raise UserError("--split-scheme conventional is MBPP's split; use it with an mbpp suite")
    if args.backend == "replay" and not args.replay:
        raise UserError("--backend replay needs --replay FILE (recorded completions)")
    if args.replay and not Path(args.replay).is_file():
        raise UserError("no such file", where=f"--replay {args.replay}")
    if args.record and args.backend == "replay":
        raise UserError("--record records a real backend's answers; it cannot record replay")
    if args.backend == "openai" and not args.base_url:
        raise UserError("--backend openai needs --base-url URL")
    if args.raw_baseline and args.backend != "vllm":
        raise UserError("--raw-baseline measures the in-process vLLM engine; use it with "
                        "--backend vllm")
    methods = load_methods(args.methods)
    seed_source, seed_where = read_seed_workflow(args.seed_workflow)
    from flowmend.engine import parse_workflow

    parse_workflow(seed_source, path=seed_where)  # WorkflowError is a UserError with a line
    check_pre_patches(methods, seed_source, seed_where)
    problems = splits.select(load_problems(args.suite), args.split, scheme=args.split_scheme,
                             task_id=task_id)
    problems.sort(key=lambda p: task_order(task_id(p)))
    if args.limit is not None:
        problems = problems[: args.limit]
    if not problems:
        raise UserError(f"the {args.split} split of {args.suite} has no tasks")
    return BenchPlan(
        suite=args.suite, split=args.split, split_scheme=args.split_scheme,
        methods=tuple(methods), problems=tuple(problems),
        seed_workflow=str(args.seed_workflow), seed_source=seed_source,
        budget={"calls": args.budget_calls, "tokens": args.budget_tokens, "cost": None,
                "wall_s": args.budget_wall_s},
        backend=args.backend, model=args.model,
        optimizer_model=args.optimizer_model or args.model,
        replay=str(Path(args.replay).resolve()) if args.replay else None,
        record=args.record, base_url=args.base_url, seed=args.seed, limit=args.limit,
        out=Path(args.out), raw_baseline=args.raw_baseline,
    )


def read_seed_workflow(spec: str) -> tuple[str, str]:
    """The seed workflow's source and where it came from: a seed id (``single_shot``, package
    data, so an installed wheel has it) or a file path.

    A path into ``examples/workflows/`` that is missing here (the default of the command
    line, run from another folder or an installed wheel) is the seed of the same name.
    """
    if spec in seeds.ids():
        return seeds.load(spec), f"seed:{spec}"
    path = Path(spec)
    if not path.exists() and path.parent.as_posix().endswith("examples/workflows") \
            and path.stem in seeds.ids():
        return seeds.load(path.stem), f"seed:{path.stem}"
    try:
        return path.read_text(), str(path)
    except OSError as err:
        raise UserError(f"cannot read the seed workflow: {err.strerror}", where=str(path)) from None


def check_pre_patches(methods, seed_source: str, where: str) -> None:
    """Every method's pre-patches must apply to the seed, or no task could run it."""
    from flowmend.engine import Applied, apply_patches

    for method in methods:
        if not method.config.pre_patches:
            continue
        result = apply_patches(seed_source, list(method.config.pre_patches))
        if not isinstance(result, Applied):
            raise UserError(f"method {method.name}'s pre-patches do not apply to the seed "
                            f"workflow: {result.detail}", where=where)


def open_models(plan: BenchPlan):
    """The program and optimizer brokers (one engine when they name the same model)."""
    from flowmend.llm import open_models as _open
    from flowmend.llm._config import model_config

    def config(model: str):
        return model_config(model, backend=plan.backend, seed=plan.seed,
                            base_urls=(plan.base_url,) if plan.base_url else (),
                            replay=plan.replay if plan.backend == "replay" else None,
                            record=plan.record)

    return _open(config(plan.model), config(plan.optimizer_model))


def repair_solver(plan: BenchPlan, *, program, optimizer, sandbox):
    """The real path: each method is `flowmend.engine.repair` with its own RepairConfig, under
    the run's budget and rng seed."""
    from flowmend.engine import Budget, repair

    budget = Budget(calls=plan.budget["calls"], tokens=plan.budget["tokens"],
                    cost=plan.budget["cost"], wall_s=plan.budget["wall_s"])

    def solve(problem, method: Method) -> dict:
        config = replace(method.config, budget=budget, rng_seed=plan.seed)
        result = repair(plan.seed_source, problem.task, program=program, optimizer=optimizer,
                        sandbox=sandbox, config=config)
        return result.to_json()

    return solve


def broker_stats(*brokers) -> dict[str, float]:
    """Completion tokens, engine-busy seconds and batch sizes summed over distinct brokers."""
    tokens, busy, batches, requests, failed = 0, 0.0, 0, 0, 0
    for broker in {id(b): b for b in brokers}.values():
        stats = broker.stats().to_json()
        tokens += int(stats.get("completion_tokens", 0))
        busy += float(stats.get("busy_s", 0.0))
        batches += int(stats.get("batches", 0))
        requests += int(stats.get("requests", 0))
        failed += int(stats.get("failed_batches", 0))
    result = {"completion_tokens": tokens, "engine_busy_s": busy, "batches": batches,
              "requests": requests, "failed_batches": failed}
    engines = [b.backend.engine_stats() for b in {id(b): b for b in brokers}.values()
               if hasattr(b.backend, "engine_stats")]
    if len(engines) == 1:  # vLLM's continuous batch: how full it was kept
        result["mean_running"] = engines[0]["mean_running"]
    return result


def performance(wall_s: float, stats: RunStats, model_stats: dict[str, float]) -> dict[str, Any]:
    tokens, busy = model_stats["completion_tokens"], model_stats["engine_busy_s"]
    return {
        "wall_s": round(wall_s, 3),
        "jobs": stats.done,
        "completion_tokens": tokens,
        "engine_busy_s": round(busy, 3),
        "tokens_per_busy_s": round(tokens / busy, 1) if busy > 0 else None,
        "tokens_per_wall_s": round(tokens / wall_s, 1) if wall_s > 0 else None,
        "outside_model_share": round(max(0.0, 1 - busy / wall_s), 4) if wall_s > 0 else None,
        "hidden_check_s": round(stats.hidden_check_s, 3),
        "engine_calls": model_stats.get("batches"),
        "failed_engine_calls": model_stats.get("failed_batches"),
        "mean_batch": round(model_stats["requests"] / model_stats["batches"], 2)
        if model_stats.get("batches") else None,
        "mean_running": model_stats.get("mean_running"),
        "note": "engine busy time is the broker's; the rest of the wall time is the engine "
                "loop, the sandbox, the verifier and the hidden-test scoring",
    }


def run_from_args(args, *, on_progress: Callable[[BenchProgress], None] | None = None) -> int:
    """Plan, open the models and the sandbox, run, keep results; `on_progress` gets a
    `BenchProgress` at the start and after each finished job (the command line draws it)."""
    console = Console(stderr=True)
    plan = plan_from_args(args)
    store = RunStore(plan.out, plan.identity())
    store.check()  # a resume with other arguments is refused before a model loads
    pairs = {(task_id(p), m.name) for p in plan.problems for m in plan.methods}
    done = {(r["task_id"], r["method"]) for r in read_results(plan.out)} if plan.out.is_dir() \
        else set()
    todo = len(pairs - done)
    if not todo:
        with store:
            write_samples(plan.out, store.records, [m.name for m in plan.methods])
        _print_summary(plan, console)
        return 0
    console.print(f"{plan.suite} {plan.split}: {len(plan.problems)} tasks × "
                  f"{len(plan.methods)} methods, {len(pairs) - todo} already done, "
                  f"{todo} to run → {plan.out}")
    models = open_models(plan)  # a model or replay file that fails to open writes nothing
    try:
        engines = _vllm_engines(models) if plan.raw_baseline else []
        for engine in engines:
            engine.record_workload()
        with store:
            stats, wall = _execute(plan, store, models, args, on_progress)
            figures = performance(wall, stats, broker_stats(models.program, models.optimizer))
            if engines:
                figures.update(_raw_baseline(engines, figures, console))
            store.update_run_json(performance=figures)
            write_samples(plan.out, store.records, [m.name for m in plan.methods])
    finally:
        models.close()
    _print_summary(plan, console)
    return 0


def _execute(plan: BenchPlan, store: RunStore, models, args, on_progress):
    from flowmend.llm import BrokerClosed, ModelError
    from flowmend.sandbox import Sandbox, SandboxError

    def failures() -> int:
        return broker_stats(models.program, models.optimizer)["failed_batches"]

    with Sandbox(workers=None) as sandbox:
        concurrency = args.concurrency or DEFAULT_CONCURRENCY
        solve = repair_solver(plan, program=models.program, optimizer=models.optimizer,
                              sandbox=sandbox)
        hidden = hidden_utility_with(sandbox, hidden_tests=hidden_tests,
                                     program=lambda problem, code: problem.program(code))
        started = time.monotonic()
        try:
            stats = run_jobs(store, plan.problems, plan.methods, solve=solve,
                             hidden=hidden, task_id=task_id,
                             concurrency=concurrency, on_progress=on_progress,
                             failures=failures,
                             fatal=(ModelError, BrokerClosed, SandboxError))
        except RunAborted as err:
            raise UserError(
                f"stopped: {err}. {len(store.records)} finished jobs are kept in "
                f"{plan.out}; fix the cause and run the same command to resume") from None
        return stats, time.monotonic() - started


def _vllm_engines(models) -> list:
    """The distinct in-process vLLM engines behind the brokers (under a recorder, if any)."""
    from flowmend.llm._vllm import VLLMBackend

    engines = {}
    for broker in (models.program, models.optimizer):
        backend = broker.backend
        backend = getattr(backend, "inner", backend)
        if isinstance(backend, VLLMBackend):
            engines[id(backend)] = backend
    return list(engines.values())


def _raw_baseline(engines: list, figures: dict[str, Any], console: Console) -> dict[str, Any]:
    """Every request of this session sent again, all at once, straight to its engine: the
    bench's throughput against raw vLLM on the same prompts, measured in the same run."""
    requests = sum(e.workload_requests for e in engines)
    with console.status(f"raw vLLM baseline: the session's {requests} requests, all at once"):
        raws = [engine.raw_throughput() for engine in engines]
    tokens = sum(r["completion_tokens"] for r in raws)
    wall = sum(r["wall_s"] for r in raws)  # one engine after the other
    raw_tps = tokens / wall if wall > 0 else None
    bench_tps = figures.get("tokens_per_wall_s")
    return {
        "raw_requests": sum(r["requests"] for r in raws),
        "raw_completion_tokens": tokens,
        "raw_wall_s": round(wall, 3),
        "raw_tokens_per_s": round(raw_tps, 1) if raw_tps else None,
        "bench_over_raw": round(bench_tps / raw_tps, 3) if raw_tps and bench_tps else None,
    }


def _print_summary(plan: BenchPlan, console: Console) -> None:
    records = read_results(plan.out)
    parts = []
    for m in plan.methods:
        rows = [r for r in records if r["method"] == m.name]
        if rows:
            parts.append(f"{m.name} {sum(r['passed'] for r in rows)}/{len(rows)}")
    console.print("pass@1 on hidden tests: " + ", ".join(parts))
    console.print(f"results in {plan.out}; `flowmend report {plan.out}` for the table and plots")
