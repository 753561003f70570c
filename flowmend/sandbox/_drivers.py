"""The job queues and the driver threads that take jobs from them, one run in flight per driver.

Concurrency has two limits. `max_inflight` executions may be under way at once (each with its
own zygote, so nothing a candidate does can reach another's). Of those, at most `workers` hold a
CPU slot. An execution gives its slot back while it waits on the RPC handler, and once it has
run past a short quantum (then the zygote also lowers its priority); so 32 workflows blocked on
a model broker, or a few infinite loops waiting for their timeout, never starve short jobs.

An execution's RPC handler may itself ask this sandbox for a run (a workflow's `verify(code)`
checks the code in a sandbox of its own). The execution that asked holds its driver while it
waits, so such a nested job must never queue behind executions like it: if every driver were
held by one of them, it would wait for ever. Nested jobs therefore have lanes of their own, one
per depth of nesting, each with its own queue and at most `max_nested` drivers. A nested job
waits only behind jobs of its own depth, whose runs wait (if at all) only on deeper ones; and
200 threads of one workflow calling `verify` at once start `max_nested` runs, not 200. A job
nested deeper than `MAX_DEPTH` is refused (SandboxError, which the handler passes on).
"""

from __future__ import annotations

import itertools
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from flowmend.sandbox._isolation import FIRST_UID
from flowmend.sandbox._job import Job
from flowmend.sandbox._run import Run, handler_context
from flowmend.sandbox._types import SandboxError
from flowmend.sandbox._verdict import CheckVerdict, all_failed, exec_result, harness_error
from flowmend.sandbox._zygotes import Zygote, ZygotePool

QUEUED, STOP = 0, 1  # within a lane, stop signals come after every job
MAX_DEPTH = 3  # lanes of nested jobs: verify(code) whose code calls verify, and so on


@dataclass
class _Lane:
    """One queue and the drivers that serve it: lane 0 the caller's jobs, lane d the jobs
    that handlers of lane d-1 runs asked for."""

    cap: int  # drivers, at most
    jobs: queue.PriorityQueue = field(default_factory=queue.PriorityQueue)
    threads: list[threading.Thread] = field(default_factory=list)
    idle: int = 0


class Drivers:
    """The queues of jobs, the driver threads that run them, and the CPU slots they share."""

    def __init__(self, zygotes: ZygotePool, closed: threading.Event, workers: int,
                 max_inflight: int, max_nested: int):
        self.zygotes = zygotes
        self.workers = workers
        self.max_inflight = max_inflight
        self.max_nested = max_nested
        self.aborting = False  # closing on an error: kill what runs, fail what waits
        self._closed = closed
        self._slots = threading.BoundedSemaphore(workers)
        self._held = 0  # CPU slots held by runs
        self._wanting = 0  # drivers waiting for one
        self._lanes = [_Lane(max_inflight)] + [_Lane(max_nested) for _ in range(MAX_DEPTH)]
        self._order = itertools.count()  # FIFO within a priority; never compares two jobs
        self._lock = threading.Lock()
        self._drivers = 0  # started, in every lane: each has its own uid

    def warm(self, drivers: int) -> None:
        """Start `drivers` drivers for the caller's jobs (at most `max_inflight`), each taking
        a zygote at once."""
        with self._lock:
            for _ in range(min(self.max_inflight, drivers)):
                self._add_driver(self._lanes[0])

    def enqueue(self, job: Job) -> Future:
        host, depth = handler_context()
        job.depth = depth + 1 if host is self else 0
        if job.depth > MAX_DEPTH:
            raise SandboxError(f"a sandbox job nested {job.depth} deep (at most {MAX_DEPTH})")
        lane = self._lanes[job.depth]
        with self._lock:  # never queued after close() has failed what was queued
            if self._closed.is_set():
                raise SandboxError("the sandbox is closed")
            lane.jobs.put((QUEUED, next(self._order), job))
        if job.depth:
            self._add_driver_for_nested(lane)
        else:
            self._grow()
        return job.future

    def close(self, abort: bool) -> bool:
        """Set `closed`, then stop every driver once the queues are done (or, `abort`, at once,
        failing what is queued and killing what runs). False if already closed."""
        with self._lock:
            if self._closed.is_set():
                return False
            self._closed.set()
            self.aborting = abort
            lanes = [(lane, list(lane.threads)) for lane in self._lanes]
        if abort:
            for lane, _ in lanes:
                self._fail_queued(lane)
        for lane, threads in lanes:
            for _ in threads:
                lane.jobs.put((STOP, next(self._order), None))
        for _, threads in lanes:
            for thread in threads:
                thread.join(timeout=30)
        return True

    def describe(self, slot: int) -> dict:
        isolation = self.zygotes.isolation
        return isolation.describe(FIRST_UID + slot if isolation.sets_uid else None)

    def give_slot(self, early: bool) -> None:
        with self._lock:
            self._held -= 1
        self._slots.release()
        if early:
            self._grow()

    # Threads -----------------------------------------------------------------------------------

    @staticmethod
    def _fail_queued(lane: _Lane) -> None:
        while True:
            try:
                _, _, job = lane.jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(SandboxError("the sandbox closed before this job ran"))

    def _add_driver(self, lane: _Lane) -> None:
        slot = self._drivers
        self._drivers += 1
        thread = threading.Thread(target=self._drive, args=(lane, slot),
                                  name=f"flowmend-sandbox-{slot}", daemon=True)
        lane.threads.append(thread)
        thread.start()

    def _grow(self) -> None:
        """If jobs wait, every driver is busy and a CPU slot is free (its run gave it back
        early: an RPC wait, a long run), one more driver, with its own zygote, can use it."""
        lane = self._lanes[0]
        with self._lock:
            if (not self._closed.is_set() and lane.idle == 0 and not lane.jobs.empty()
                    and len(lane.threads) < lane.cap
                    and self._held + self._wanting < self.workers):
                self._add_driver(lane)

    def _add_driver_for_nested(self, lane: _Lane) -> None:
        """A nested job has a driver as soon as its lane has room for one: no CPU slot need be
        free (it takes one like any run). The driver stays for later jobs of its lane."""
        with self._lock:
            if (not self._closed.is_set() and lane.idle < lane.jobs.qsize()
                    and len(lane.threads) < lane.cap):
                self._add_driver(lane)

    def _take_slot(self) -> None:
        with self._lock:
            self._wanting += 1
        self._slots.acquire()
        with self._lock:
            self._wanting -= 1
            self._held += 1

    def _drive(self, lane: _Lane, slot: int) -> None:
        try:
            zygote = self.zygotes.take()  # warm before the first job arrives
        except SandboxError:
            zygote = None
        try:
            while True:
                with self._lock:
                    lane.idle += 1
                _, _, job = lane.jobs.get()
                with self._lock:
                    lane.idle -= 1
                if job is None:
                    return
                if not job.future.set_running_or_notify_cancel():
                    continue
                try:
                    result, zygote = self._execute(slot, zygote, job)
                except BaseException as err:  # noqa: BLE001 - the verdict must still arrive
                    if zygote is not None:
                        zygote.kill()
                        zygote = None
                    result = harness_error(f"{type(err).__name__}: {err}", self.describe(0))
                    if job.mode == "check":
                        result = all_failed(result, len(job.tests), "harness_error")
                job.future.set_result(result)
        finally:
            if zygote is not None:
                zygote.kill()

    # One job -----------------------------------------------------------------------------------

    def _execute(self, slot: int, zygote: Zygote | None, job: Job):
        if job.mode == "exec":
            attempt, zygote = self._attempt(slot, zygote, job, 0, job.limits.timeout_s)
            return exec_result(attempt, self.describe(slot)), zygote
        verdict = CheckVerdict(len(job.tests), job.limits.timeout_s, job.limits.output_bytes)
        again = True
        while again:
            attempt, zygote = self._attempt(slot, zygote, job, verdict.start, verdict.budget_s)
            again = verdict.add(attempt, exec_result(attempt, self.describe(slot)))
        return verdict.result(), zygote

    def _attempt(self, slot: int, zygote: Zygote | None, job: Job, start: int, budget_s: float):
        # The zygote first, then the CPU slot: waiting for a fresh zygote must not hold a slot.
        if zygote is None or not zygote.alive():
            if zygote is not None:
                zygote.kill()
            zygote = self.zygotes.take()
        self._take_slot()
        run = Run(self, zygote, slot, job, start, budget_s)
        try:
            attempt, healthy = run.go()
        finally:
            if run.attempt.holding:  # the run may have given its slot back already
                self.give_slot(early=False)
        if not healthy:
            zygote.kill()
            zygote = None
        return attempt, zygote
