"""Evaluating a set-up on tasks: the inner loop's repair, then the task's hidden tests, once
per cache key. This is where the meta loop reads ground truth, after the repair has returned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from flowmend.bench.methods import Method
from flowmend.bench import build_record, error_result, hidden_utility_with
from flowmend.engine import Budget, repair
from flowmend.meta._cache import EvalCache, cache_key
from flowmend.meta._space import Setup


class EngineFailed(RuntimeError):
    """The model engine or the sandbox failed under an evaluation: its record would say the
    set-up failed the task when the machine did, so nothing is cached and the run stops."""


class Evaluator:
    """Runs set-ups on problems under one budget, models and rng seed, through a cache.

    Args:
        program, optimizer: the model brokers.
        sandbox: the sandbox the workflows and hidden tests run in.
        cache: where records are kept by key.
        model: the models' names, part of every key.
        budget: the per-task budget every set-up spends.
        rng_seed: the repairs' rng seed, part of every key.
        failures: a counter of failed engine calls; if it grows during an evaluation, that
            evaluation is not kept.
        fatal: exceptions that mean the machine failed, not the set-up.
        meta: the broker meta calls (template rewrites) go to; default the optimizer's.
    """

    def __init__(self, *, program, optimizer, sandbox, cache: EvalCache, model: str,
                 budget: Budget, rng_seed: int = 0, failures: Callable[[], int] | None = None,
                 fatal: tuple[type[BaseException], ...] = (), meta=None):
        self.program, self.optimizer, self.sandbox = program, optimizer, sandbox
        self.meta = meta or optimizer
        self.cache, self.model, self.budget, self.rng_seed = cache, model, budget, rng_seed
        self._failures = failures or (lambda: 0)
        self._lock = threading.Lock()
        self.evaluated = 0  # evaluations this process ran (cache hits excluded)
        self.tokens = 0  # and the tokens they spent
        self._fatal = fatal
        self._hidden = hidden_utility_with(sandbox, hidden_tests=lambda p: p.hidden_tests,
                                           program=lambda p, code: p.program(code))

    def key(self, setup: Setup, problem: Any) -> str:
        return cache_key(setup=setup.digest(), library=setup.library_digest,
                         task_id=problem.task.task_id, rng_seed=self.rng_seed, model=self.model)

    def evaluate(self, setup: Setup, problem: Any) -> dict[str, Any]:
        """The record of `setup` on `problem`: the cached one, or a new evaluation."""
        key = self.key(setup, problem)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        config = replace(setup.config, budget=self.budget, rng_seed=self.rng_seed)
        failed_before = self._failures()
        started = time.monotonic()
        try:
            result = repair(setup.seed_source, problem.task, program=self.program,
                            optimizer=self.optimizer, sandbox=self.sandbox,
                            config=config).to_json()
        except self._fatal as err:
            raise EngineFailed(f"{type(err).__name__}: {err}") from err
        except Exception as err:  # a bug in one evaluation is that set-up's failure, kept
            result = error_result(err)
        if self._failures() > failed_before:
            raise EngineFailed(f"engine calls failed while evaluating {problem.task.task_id}")
        record = build_record(problem.task.task_id, Method(name=setup.digest()[:12]), result,
                              hidden=self._hidden, problem=problem,
                              wall_s=time.monotonic() - started)
        # What re-scoring needs: each candidate's feedback, in the order of its record.
        feedback = [c.get("feedback") for c in result.get("candidates", ())]
        record.update(setup=setup.digest(), key=key, candidate_feedback=feedback)
        self.cache.put(key, record)
        with self._lock:
            self.evaluated += 1
            self.tokens += int(record.get("tokens") or 0)
        return record

    def evaluate_in_order(self, setup: Setup, problems: Sequence[Any], *,
                          concurrency: int = 8) -> Iterator[tuple[int, dict[str, Any]]]:
        """Evaluate on many threads (their model calls batch), yield (index, record) in the
        problems' order. Closing the iterator early (a pruned trial) cancels what has not
        started."""
        pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="meta")
        futures: list[Future] = []
        try:
            for problem in problems:
                futures.append(pool.submit(self.evaluate, setup, problem))
            for index, future in enumerate(futures):
                yield index, future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
