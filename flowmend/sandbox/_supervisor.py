"""`Sandbox`: the public face of the supervisor, over the job queues, drivers and zygotes.

Who talks to whom, from a caller's job to its verdict:

  caller               job queues (_drivers)          driver thread (one per run in flight)
  submit, check --Job--> lane 0: the caller's -------> takes a CPU slot and a warm zygote
    ^                    lane d: nested, depth d       from the ZygotePool (_zygotes)
    |                         ^                                 |
    |                         | a nested job, when the          v
    |                         | handler asks for one     Run (_run): sends the job (JSON and 5
    |                         | (a workflow's verify)    fds) to the zygote, which forks the
    |                         |                          child; then one select loop over:
    |              rpc(method, payload) <-- handler <---- RPC request <------------+
    |              (the caller's handler)   thread -----> RPC answer ------------->|
    |              counted on the run's clock             stdout, stderr <---------| child
    |              (_clock), but in model_wait()          records (nonce) <--------+
    |                                                     exit report <---- zygote
    |                                                             |
    +--- Future <-- ExecResult / CheckResult <-- verdict (_verdict): records and exit report,
                                                 per attempt (a check may take several)

`_job` holds what passes between these threads, `_types` the public data, `_inner/` the code
that runs inside the sandbox (stdlib only; `_inner/flowmend_wire.py` is the wire both ends use).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future

from flowmend.sandbox._drivers import Drivers
from flowmend.sandbox._isolation import detect
from flowmend.sandbox._job import Job
from flowmend.sandbox._types import CheckResult, ExecResult, Limits, RpcHandler
from flowmend.sandbox._zygotes import ZygotePool


class Sandbox:
    """A pool of warm, isolated zygotes and the threads that supervise their children.

    Use as a context manager. `run`/`check` block; `submit`/`submit_check` return futures.
    """

    def __init__(self, workers: int | None = None, *, max_inflight: int | None = None,
                 max_nested: int | None = None, isolation: str | None = None,
                 warm: int | None = None):
        """`workers` CPU slots (default: one per core); `max_inflight` executions under way
        at once (default: 32, or 8 per worker); `max_nested` runs at once of the jobs that RPC
        handlers ask for, per depth of nesting (default: 8, or 2 per worker)."""
        cpus = len(os.sched_getaffinity(0))
        self.workers = workers or cpus
        self.max_inflight = max_inflight or max(32, 8 * self.workers)
        self.max_nested = max_nested or max(8, 2 * self.workers)
        if self.max_inflight < self.workers:
            raise ValueError("max_inflight must be at least workers")
        if self.max_nested < 1:
            raise ValueError("max_nested must be at least 1")
        closed = threading.Event()  # one flag for the queues and the zygote pool
        self._zygotes = ZygotePool(detect(isolation), closed)
        self._drivers = Drivers(self._zygotes, closed, self.workers, self.max_inflight,
                                self.max_nested)
        self._drivers.warm(warm or self.workers)

    @property
    def isolation(self) -> dict:
        return self._drivers.describe(0)

    @property
    def zygote_starts(self) -> int:
        return self._zygotes.starts

    def submit(self, source: str, *, limits: Limits | None = None,
               rpc: RpcHandler | None = None) -> Future:
        """Run `source` as a program; the future yields an `ExecResult`."""
        return self._drivers.enqueue(Job("exec", source, [], limits or Limits(), 0.0, rpc))

    def run(self, source: str, *, limits: Limits | None = None,
            rpc: RpcHandler | None = None) -> ExecResult:
        return self.submit(source, limits=limits, rpc=rpc).result()

    def submit_check(self, code: str, tests, *, limits: Limits | None = None,
                     test_timeout_s: float = 3.0, rpc: RpcHandler | None = None) -> Future:
        """Load `code`, then run each test snippet in the same child in order, each under its
        own time limit; the future yields a `CheckResult`."""
        tests = [str(t) for t in tests]
        if test_timeout_s <= 0:
            raise ValueError("test_timeout_s must be positive")
        return self._drivers.enqueue(
            Job("check", code, tests, limits or Limits(), test_timeout_s, rpc))

    def check(self, code: str, tests, *, limits: Limits | None = None,
              test_timeout_s: float = 3.0, rpc: RpcHandler | None = None) -> CheckResult:
        return self.submit_check(code, tests, limits=limits, test_timeout_s=test_timeout_s,
                                 rpc=rpc).result()

    def close(self, *, abort: bool = False) -> None:
        """Stop the drivers and zygotes. Jobs already queued still run, unless `abort`: then
        they fail with SandboxError and runs under way are killed (their verdict is a
        harness_error), so an interrupted caller is not kept waiting on them."""
        if self._drivers.close(abort):
            self._zygotes.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(abort=exc_type is not None)
