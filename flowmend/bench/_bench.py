"""A bench run: plan it, open the models and the sandbox, run, keep results (`flowmend bench`).

Everything a user can get wrong is checked before anything is written (`make_plan`: the
methods, the seed workflow, the suite and split). Then `run_bench` opens (or resumes) the run
folder, starts the models and the sandbox, and `run_jobs` does the work, reporting progress and
status lines to callbacks the command line draws.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
    # The sandbox's isolation as found before the run (`describe_isolation`); its mode is part
    # of the result: without namespaces candidate code could read the hidden tests.
    isolation: dict = field(default_factory=lambda: {"mode": "unknown", "weak": True})
    allow_weak_isolation: bool = False

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
            "isolation": self.isolation["mode"],
        }

    @property
    def isolation_warning(self) -> str | None:
        """The line every output of a weakly isolated run carries; None with namespaces."""
        return weak_isolation_warning(self.isolation) if self.isolation.get("weak") else None


def weak_isolation_warning(isolation: dict) -> str:
    why = f" ({isolation['reason']})" if isolation.get("reason") else ""
    return (f"WARNING: weak isolation: the sandbox ran without namespaces{why}, so candidate "
            "code could read the benchmark's hidden tests from disk; allowed by "
            "--allow-weak-isolation")


def task_id(problem: Any) -> str:
    return problem.task.task_id


def hidden_tests(problem: Any):
    return problem.hidden_tests


def load_problems(suite: str) -> list[Any]:
    """The suite's problems (Task plus hidden tests), from the datasets module."""
    from flowmend.bench import datasets

    return list(datasets.load(suite))


def make_plan(*, suite: str, split: str, split_scheme: str, methods: str, seed_workflow: str,
              budget: dict[str, Any], backend: str, model: str, optimizer_model: str | None,
              replay: str | None, record: str | None, base_url: str | None, seed: int,
              limit: int | None, out: str | Path, raw_baseline: bool = False,
              allow_weak_isolation: bool = False, isolation: str | None = None,
              extra_methods: Sequence[Method] = ()) -> BenchPlan:
    """Load and check what a run needs (methods, seed workflow, pre-patches, the split's tasks,
    a sandbox with namespaces unless ``allow_weak_isolation``) before anything is written; a
    `UserError` says what is wrong. ``isolation`` forces a sandbox mode (tests);
    ``extra_methods`` join the named ones (a learned set-up's, built by the command line)."""
    from flowmend.sandbox import describe_isolation

    found = describe_isolation(isolation)
    if found["weak"] and not allow_weak_isolation:
        raise UserError(f"the sandbox has no namespaces here ({found['reason']}): candidate "
                        "code could read the hidden tests; install bubblewrap, or pass "
                        "--allow-weak-isolation to run anyway (every output then says so)")
    loaded = load_methods(methods)
    clash = sorted({m.name for m in loaded} & {m.name for m in extra_methods})
    if clash:
        raise UserError(f"method name(s) {', '.join(clash)} used twice")
    loaded += list(extra_methods)
    seed_source, seed_where = read_seed_workflow(seed_workflow)
    from flowmend.engine import parse_workflow

    parse_workflow(seed_source, path=seed_where)  # WorkflowError is a UserError with a line
    check_pre_patches(loaded, seed_source, seed_where)
    problems = splits.select(load_problems(suite), split, scheme=split_scheme, task_id=task_id)
    problems.sort(key=lambda p: task_order(task_id(p)))
    if limit is not None:
        problems = problems[:limit]
    if not problems:
        raise UserError(f"the {split} split of {suite} has no tasks")
    return BenchPlan(
        suite=suite, split=split, split_scheme=split_scheme,
        methods=tuple(loaded), problems=tuple(problems),
        seed_workflow=str(seed_workflow), seed_source=seed_source, budget=dict(budget),
        backend=backend, model=model, optimizer_model=optimizer_model or model,
        replay=str(Path(replay).resolve()) if replay else None,
        record=record, base_url=base_url, seed=seed, limit=limit,
        out=Path(out), raw_baseline=raw_baseline, isolation=found,
        allow_weak_isolation=allow_weak_isolation,
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
    if not path.exists() and path.suffix != ".py":
        raise UserError(f"no seed workflow {spec!r} (seeds: {', '.join(seeds.ids())}) and no "
                        "such file", where="--seed-workflow")
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
        result = apply_patches(method.seed_source or seed_source,
                               list(method.config.pre_patches))
        if not isinstance(result, Applied):
            raise UserError(f"method {method.name}'s pre-patches do not apply to the seed "
                            f"workflow: {result.detail}", where=where)


def open_models(plan: BenchPlan):
    """The program and optimizer brokers (one engine when they name the same model)."""
    return models_for(backend=plan.backend, model=plan.model,
                      optimizer_model=plan.optimizer_model, seed=plan.seed,
                      base_url=plan.base_url, replay=plan.replay, record=plan.record)


def models_for(*, backend: str, model: str, optimizer_model: str | None, seed: int,
               base_url: str | None = None, replay: str | None = None,
               record: str | None = None):
    """The program and optimizer brokers of a batch run (the bench's or the meta loop's)."""
    from flowmend.llm import open_models as _open
    from flowmend.llm._config import model_config

    def config(name: str):
        return model_config(name, backend=backend, seed=seed,
                            base_urls=(base_url,) if base_url else (),
                            replay=replay if backend == "replay" else None, record=record)

    return _open(config(model), config(optimizer_model or model))


def repair_solver(plan: BenchPlan, *, program, optimizer, sandbox, hidden=None):
    """The real path: each method runs its strategy (`flowmend.bench._strategies`: the inner
    loop, or a baseline of several runs) with its own RepairConfig, under the run's budget and
    rng seed. ``hidden`` (the hidden check) serves `oracle-select` alone."""
    from flowmend.bench._runner import as_hidden
    from flowmend.bench._strategies import solve_with
    from flowmend.engine import Budget

    budget = Budget(calls=plan.budget["calls"], tokens=plan.budget["tokens"],
                    cost=plan.budget["cost"], wall_s=plan.budget["wall_s"])

    def solve(problem, method: Method) -> dict:
        config = replace(method.config, budget=budget, rng_seed=plan.seed)
        oracle = method.strategy == "oracle-select" and hidden is not None
        utility = (lambda code: as_hidden(hidden(problem, code)).utility) if oracle else None
        return solve_with(method.strategy, method.seed_source or plan.seed_source, problem.task,
                          program=program, optimizer=optimizer, sandbox=sandbox, config=config,
                          utility=utility)

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


@dataclass(frozen=True)
class BenchOutcome:
    """What `run_bench` did: jobs run now, and jobs found already finished in the folder."""

    ran: int
    already_done: int


def run_bench(plan: BenchPlan, *, concurrency: int | None = None,
              on_progress: Callable[[BenchProgress], None] | None = None,
              on_status: Callable[[str], None] | None = None) -> BenchOutcome:
    """Open (or resume) the run folder, the models and the sandbox; run what is not done yet;
    keep every result. `on_progress` gets a `BenchProgress` at the start and after each
    finished job, `on_status` a line of text at each stage (the command line draws both)."""
    status = on_status or (lambda _text: None)
    store = RunStore(plan.out, plan.identity())
    store.check()  # a resume with other arguments is refused before a model loads
    pairs = {(task_id(p), m.name) for p in plan.problems for m in plan.methods}
    done = {(r["task_id"], r["method"]) for r in read_results(plan.out)} if plan.out.is_dir() \
        else set()
    todo = len(pairs - done)
    if not todo:
        with store:
            write_samples(plan.out, store.records, [m.name for m in plan.methods])
        return BenchOutcome(ran=0, already_done=len(pairs))
    if plan.isolation_warning:
        status(plan.isolation_warning)
    status(f"{plan.suite} {plan.split}: {len(plan.problems)} tasks × {len(plan.methods)} "
           f"methods, {len(pairs) - todo} already done, {todo} to run → {plan.out}")
    models = open_models(plan)  # a model or replay file that fails to open writes nothing
    try:
        engines = _vllm_engines(models) if plan.raw_baseline else []
        for engine in engines:
            engine.record_workload()
        with store:
            stats, wall = _execute(plan, store, models, concurrency, on_progress)
            figures = performance(wall, stats, broker_stats(models.program, models.optimizer))
            if engines:
                status(f"raw vLLM baseline: the session's "
                       f"{sum(e.workload_requests for e in engines)} requests, all at once")
                figures.update(_raw_baseline(engines, figures))
            store.update_run_json(performance=figures)
            write_samples(plan.out, store.records, [m.name for m in plan.methods])
    finally:
        models.close()
    return BenchOutcome(ran=todo, already_done=len(pairs) - todo)


def pass_counts(plan: BenchPlan) -> dict[str, tuple[int, int]]:
    """Per method of the plan: (tasks passed on hidden tests, tasks recorded)."""
    records = read_results(plan.out)
    out = {}
    for m in plan.methods:
        rows = [r for r in records if r["method"] == m.name]
        if rows:
            out[m.name] = (sum(bool(r["passed"]) for r in rows), len(rows))
    return out


def _execute(plan: BenchPlan, store: RunStore, models, concurrency, on_progress):
    from flowmend.llm import BrokerClosed, ModelError
    from flowmend.sandbox import Sandbox, SandboxError

    def failures() -> int:
        return broker_stats(models.program, models.optimizer)["failed_batches"]

    forced = plan.isolation["mode"] if plan.isolation["mode"] != "unknown" else None
    with Sandbox(workers=None, isolation=forced) as sandbox:
        isolation = {**sandbox.isolation, "weak": not sandbox.isolation["namespaces"]}
        if isolation["mode"] != plan.isolation["mode"]:
            # bwrap was found but refused at start: the sandbox fell back to rlimits.
            raise UserError(f"the sandbox started with isolation {isolation['mode']!r}, not "
                            f"{plan.isolation['mode']!r} as planned (bubblewrap refused); "
                            "nothing was run")
        store.update_run_json(isolation=isolation)
        concurrency = concurrency or DEFAULT_CONCURRENCY
        hidden = hidden_utility_with(sandbox, hidden_tests=hidden_tests,
                                     visible_tests=lambda problem: problem.task.visible_tests,
                                     program=lambda problem, code: problem.program(code))
        solve = repair_solver(plan, program=models.program, optimizer=models.optimizer,
                              sandbox=sandbox, hidden=hidden)
        started = time.monotonic()
        try:
            stats = run_jobs(store, plan.problems, plan.methods, solve=solve,
                             hidden=hidden, task_id=task_id,
                             concurrency=concurrency, on_progress=on_progress,
                             failures=failures,
                             fatal=(ModelError, BrokerClosed, SandboxError),
                             extra={"isolation": isolation["mode"]})
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


def _raw_baseline(engines: list, figures: dict[str, Any]) -> dict[str, Any]:
    """Every request of this session sent again, all at once, straight to its engine: the
    bench's throughput against raw vLLM on the same prompts, measured in the same run."""
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
