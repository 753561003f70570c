"""The job queue and the driver threads that take jobs from it, one run in flight per driver.

Concurrency has two limits. `max_inflight` executions may be under way at once (each with its
own zygote, so nothing a candidate does can reach another's). Of those, at most `workers` hold a
CPU slot. An execution gives its slot back while it waits on the RPC handler, and once it has
run past a short quantum (then the zygote also lowers its priority); so 32 workflows blocked on
a model broker, or a few infinite loops waiting for their timeout, never starve short jobs.

An execution's RPC handler may itself ask this sandbox for a run (a workflow's `verify(code)`
checks the code in a sandbox of its own). Such a nested job goes ahead of the queue, and if no
driver is idle it gets a new one even past `max_inflight`: the execution that asked holds a
driver while it waits, so `max_inflight` workflows all waiting on nested jobs queued behind
them would otherwise wait for ever.
"""

from __future__ import annotations

import itertools
import queue
import threading
from concurrent.futures import Future

from flowmend.sandbox._isolation import FIRST_UID
from flowmend.sandbox._job import Job
from flowmend.sandbox._run import Run, handler_host
from flowmend.sandbox._types import SandboxError
from flowmend.sandbox._verdict import CheckVerdict, all_failed, exec_result, harness_error
from flowmend.sandbox._zygotes import Zygote, ZygotePool

NESTED, QUEUED, STOP = 0, 1, 2  # job priorities: nested jobs first, stop signals last


class Drivers:
    """The queue of jobs, the driver threads that run them, and the CPU slots they share."""

    def __init__(self, zygotes: ZygotePool, closed: threading.Event, workers: int,
                 max_inflight: int):
        self.zygotes = zygotes
        self.workers = workers
        self.max_inflight = max_inflight
        self.aborting = False  # closing on an error: kill what runs, fail what waits
        self._closed = closed
        self._slots = threading.BoundedSemaphore(workers)
        self._held = 0  # CPU slots held by runs
        self._wanting = 0  # drivers waiting for one
        self._jobs: queue.PriorityQueue[tuple[int, int, Job | None]] = queue.PriorityQueue()
        self._order = itertools.count()  # FIFO within a priority; never compares two jobs
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: list[threading.Thread] = []

    def warm(self, drivers: int) -> None:
        """Start `drivers` drivers (at most `max_inflight`), each taking a zygote at once."""
        with self._lock:
            for _ in range(min(self.max_inflight, drivers)):
                self._add_driver()

    def enqueue(self, job: Job) -> Future:
        nested = handler_host() is self
        with self._lock:  # never queued after close() has failed what was queued
            if self._closed.is_set():
                raise SandboxError("the sandbox is closed")
            self._jobs.put((NESTED if nested else QUEUED, next(self._order), job))
        if nested:
            self._add_driver_for_nested()
        else:
            self._grow()
        return job.future

    def close(self, abort: bool) -> bool:
        """Set `closed`, then stop every driver once the queue is done (or, `abort`, at once,
        failing what is queued and killing what runs). False if already closed."""
        with self._lock:
            if self._closed.is_set():
                return False
            self._closed.set()
            self.aborting = abort
            threads = list(self._threads)
        if abort:
            self._fail_queued()
        for _ in threads:
            self._jobs.put((STOP, next(self._order), None))
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

    def _fail_queued(self) -> None:
        while True:
            try:
                _, _, job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(SandboxError("the sandbox closed before this job ran"))

    def _add_driver(self) -> None:
        slot = len(self._threads)
        thread = threading.Thread(target=self._drive, args=(slot,),
                                  name=f"flowmend-sandbox-{slot}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _grow(self) -> None:
        """If jobs wait, every driver is busy and a CPU slot is free (its run gave it back
        early: an RPC wait, a long run), one more driver, with its own zygote, can use it."""
        with self._lock:
            if (not self._closed.is_set() and self._idle == 0 and not self._jobs.empty()
                    and len(self._threads) < self.max_inflight
                    and self._held + self._wanting < self.workers):
                self._add_driver()

    def _add_driver_for_nested(self) -> None:
        """A nested job never waits for a busy driver: if none is idle, one more starts, past
        `max_inflight` if need be (see the module's docstring). It stays for later jobs."""
        with self._lock:
            if not self._closed.is_set() and self._idle == 0:
                self._add_driver()

    def _take_slot(self) -> None:
        with self._lock:
            self._wanting += 1
        self._slots.acquire()
        with self._lock:
            self._wanting -= 1
            self._held += 1

    def _drive(self, slot: int) -> None:
        try:
            zygote = self.zygotes.take()  # warm before the first job arrives
        except SandboxError:
            zygote = None
        try:
            while True:
                with self._lock:
                    self._idle += 1
                _, _, job = self._jobs.get()
                with self._lock:
                    self._idle -= 1
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
