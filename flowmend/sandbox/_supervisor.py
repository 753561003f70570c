"""The supervisor: warm zygotes, one driver thread per execution in flight, verdicts in the parent.

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
import json
import os
import queue
import secrets
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from flowmend.sandbox._isolation import FIRST_UID, Isolation, detect, fallback
from flowmend.sandbox._types import CheckResult, ExecResult, Limits, TestResult

RpcHandler = Callable[[str, Any], Any]

QUANTUM_S = 0.2  # a run holding a CPU slot longer than this gives it back
TEST_GRACE_S = 0.25  # the parent's kill comes this long after a test's own alarm
KILL_WAIT_S = 2.0
SPARE_ZYGOTES = 2  # warm zygotes kept ready beyond those in use
SPAWNER_THREADS = 4  # zygotes started at once, at most
ZYGOTE_START_S = 10.0  # a mother must fork a new zygote within this
ZYGOTE_ANSWER_S = 1.0  # a zygote asked to kill its child must report within this
MAX_RPC_OUTSTANDING = 64
_READ = 1 << 16
NESTED, QUEUED, STOP = 0, 1, 2  # job priorities: nested jobs first, stop signals last

# The sandbox whose RPC handler this thread is running, if any: a job submitted from here is
# one that a running execution waits for.
_in_handler = threading.local()


class SandboxError(RuntimeError):
    """The sandbox itself could not run (not a verdict on the candidate)."""


# --- zygotes ------------------------------------------------------------------------------------


class _Zygote:
    """One warm, isolated interpreter that forks a child per job.

    Started by bubblewrap, or (`mother=`) forked by a mother zygote into namespaces of its own.
    """

    def __init__(self, isolation: Isolation, ready_timeout_s: float = 20.0, *,
                 role: str = "ns", mother: "_Mother | None" = None):
        self.isolation = isolation
        self.mother = mother
        self.proc: subprocess.Popen | None = None
        self.init_pidfd = None
        self.pid_in_mother: int | None = None
        self.closed = False
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = parent_end
        self._lines = b""
        if mother is not None:
            try:
                self.pid_in_mother = mother.spawn(child_end.fileno())
            finally:
                child_end.close()
        else:
            self._start_bwrap(child_end, role, ready_timeout_s)
        hello = self.read_message(ready_timeout_s)
        if not hello or hello.get("ev") != "ready":
            err = self._stderr_tail()
            self.kill()
            raise SandboxError(f"zygote did not start: {err or 'no answer'}")
        if self.proc is not None:
            # From here on the zygote's stderr is not read; close our end so it cannot block it.
            self.proc.stderr.close()

    def _start_bwrap(self, child_end: socket.socket, role: str, ready_timeout_s: float) -> None:
        os.set_inheritable(child_end.fileno(), True)
        info_r, info_w = os.pipe()
        cmd = self.isolation.zygote_command(
            child_end.fileno(), info_w if self.isolation.in_namespace else None, role)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={}, start_new_session=True, close_fds=True,
            pass_fds=(child_end.fileno(), info_w),
        )
        child_end.close()
        os.close(info_w)
        try:
            # bwrap reports the host pid of the namespace's init: once it has exited, the
            # kernel has killed and reaped every process of the namespace.
            info = _read_all(info_r, ready_timeout_s) if self.isolation.in_namespace else b""
            if info:
                self.init_pidfd = os.pidfd_open(json.loads(info)["child-pid"])
        except (OSError, ValueError, KeyError):
            self.init_pidfd = None
        finally:
            os.close(info_r)

    def _stderr_tail(self) -> str:
        if self.proc is None:
            return ""
        try:
            self.proc.kill()
            return self.proc.stderr.read(4000).decode(errors="replace").strip().splitlines()[-1:][0]
        except Exception:  # noqa: BLE001 - best effort diagnostics
            return ""

    def read_message(self, timeout_s: float | None) -> dict | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while b"\n" not in self._lines:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return None
            try:
                chunk = self.sock.recv(_READ)
            except OSError:  # reset: the zygote died with our job unread
                return None
            if not chunk:
                return None
            self._lines += chunk
        line, self._lines = self._lines.split(b"\n", 1)
        return json.loads(line)

    def has_message(self) -> bool:
        return b"\n" in self._lines

    def send_job(self, payload: dict, fds: list[int]) -> None:
        data = json.dumps(payload).encode()
        socket.send_fds(self.sock, [b"J" + struct.pack("!Q", len(data))], fds)
        self.sock.sendall(data)

    def alive(self) -> bool:
        if self.closed:
            return False
        if self.proc is not None:
            return self.proc.poll() is None
        return self.mother.alive()

    def kill(self) -> None:
        """Kill the namespace and wait until nothing in it is left."""
        if self.closed:
            return
        self.closed = True
        if self.proc is None:
            # The mother SIGKILLs our init and answers once it has exited; the kernel has then
            # killed every process of the namespace. A mother that cannot is killed whole.
            if self.pid_in_mother is not None and not self.mother.kill_zygote(self.pid_in_mother):
                self.mother.kill()
            self.sock.close()
            return
        # The outer bwrap dies, its init gets SIGKILL (--die-with-parent), the kernel the rest.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            pass
        if self.init_pidfd is not None:
            select.select([self.init_pidfd], [], [], KILL_WAIT_S)
            os.close(self.init_pidfd)
            self.init_pidfd = None
        self.sock.close()


class _Mother(_Zygote):
    """A zygote in bubblewrap's namespaces that runs no jobs: it forks new zygotes, each the
    init of fresh pid, net, ipc, uts and mount namespaces, in milliseconds instead of an
    interpreter start; and kills them on request."""

    def __init__(self, isolation: Isolation):
        super().__init__(isolation, role="mother")
        self._call = threading.Lock()

    def spawn(self, fd: int) -> int:
        with self._call:
            try:
                socket.send_fds(self.sock, [b"S"], [fd])
                answer = self.read_message(ZYGOTE_START_S)
            except OSError:
                answer = None
        if not answer or answer.get("ev") != "spawned":
            raise SandboxError(f"the mother zygote could not start a zygote: {answer}")
        return int(answer["pid"])

    def kill_zygote(self, pid: int) -> bool:
        with self._call:
            if self.closed:
                return False
            try:
                self.sock.sendall(b"X" + struct.pack("!Q", pid))
                answer = self.read_message(KILL_WAIT_S + 5.0)
            except OSError:
                return False
        return bool(answer and answer.get("ev") == "gone" and answer.get("ok"))


def _read_all(fd: int, timeout_s: float) -> bytes:
    data, deadline = b"", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


# --- jobs ---------------------------------------------------------------------------------------


@dataclass
class _Job:
    mode: str  # "exec" | "check"
    source: str
    tests: list[str]
    limits: Limits
    test_timeout_s: float
    rpc: RpcHandler | None
    future: Future = field(default_factory=Future)


@dataclass
class _Attempt:
    """What the parent saw of one forked child."""

    status: str | None = None  # set when the parent killed it: timeout / output_limit / ...
    report: dict | None = None  # the zygote's exit report
    records: list[dict] = field(default_factory=list)
    tampered: str | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    wall_s: float = 0.0
    rpc_wait_s: float = 0.0
    zygote_lost: bool = False
    aborted: bool = False  # killed because the sandbox was closing on an error
    holding: bool = True  # whether this run still holds its CPU slot


class Sandbox:
    """A pool of warm, isolated zygotes and the threads that supervise their children.

    Use as a context manager. `run`/`check` block; `submit`/`submit_check` return futures.
    """

    def __init__(self, workers: int | None = None, *, max_inflight: int | None = None,
                 isolation: str | None = None, warm: int | None = None):
        cpus = len(os.sched_getaffinity(0))
        self.workers = workers or cpus
        self.max_inflight = max_inflight or max(32, 8 * self.workers)
        if self.max_inflight < self.workers:
            raise ValueError("max_inflight must be at least workers")
        self._isolation = detect(isolation)
        self._slots = threading.BoundedSemaphore(self.workers)
        self._held = 0  # CPU slots held by runs
        self._wanting = 0  # drivers waiting for one
        self._jobs: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._order = itertools.count()  # FIFO within a priority; never compares two jobs
        self._lock = threading.Lock()
        self._closed = False
        self._aborting = False  # closing on an error: kill what runs, fail what waits
        self._zygote_starts = 0
        self._idle = 0
        self._threads: list[threading.Thread] = []
        # One long-lived thread starts every zygote (bwrap's --die-with-parent follows the
        # *thread* that started it) and keeps a few warm spares, so a driver added when a run
        # gives its slot back starts work at once. The first zygote also proves (or disproves)
        # that namespaces work here.
        self._spare: queue.Queue[_Zygote] = queue.Queue()
        self._spawn_cv = threading.Condition()
        self._takers = 0
        self._spares = SPARE_ZYGOTES
        self._first_ready = threading.Event()
        self._first_error: BaseException | None = None
        self._spawning = 0
        self._mother: _Mother | None = None
        self._mother_lock = threading.Lock()
        self._mother_failed = False
        self._spawners = [threading.Thread(target=self._spawn_zygotes, args=(i == 0,), daemon=True,
                                           name=f"flowmend-sandbox-spawner-{i}")
                          for i in range(SPAWNER_THREADS)]
        self._spawners[0].start()
        self._first_ready.wait()
        if self._first_error is not None:
            self._closed = True
            self._spawners[0].join()
            raise self._first_error
        for spawner in self._spawners[1:]:
            spawner.start()
        with self._lock:
            for _ in range(min(self.max_inflight, warm or self.workers)):
                self._add_driver()

    # Public API ------------------------------------------------------------------------------

    @property
    def isolation(self) -> dict:
        return self._isolation.describe(FIRST_UID if self._isolation.sets_uid else None)

    @property
    def zygote_starts(self) -> int:
        return self._zygote_starts

    def submit(self, source: str, *, limits: Limits | None = None,
               rpc: RpcHandler | None = None) -> Future:
        """Run `source` as a program; the future yields an `ExecResult`."""
        return self._enqueue(_Job("exec", source, [], limits or Limits(), 0.0, rpc))

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
        return self._enqueue(_Job("check", code, tests, limits or Limits(), test_timeout_s, rpc))

    def check(self, code: str, tests, *, limits: Limits | None = None,
              test_timeout_s: float = 3.0, rpc: RpcHandler | None = None) -> CheckResult:
        return self.submit_check(code, tests, limits=limits, test_timeout_s=test_timeout_s,
                                 rpc=rpc).result()

    def close(self, *, abort: bool = False) -> None:
        """Stop the drivers and zygotes. Jobs already queued still run, unless `abort`: then
        they fail with SandboxError and runs under way are killed (their verdict is a
        harness_error), so an interrupted caller is not kept waiting on them."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._aborting = abort
            threads = list(self._threads)
        if abort:
            self._fail_queued()
        for _ in threads:
            self._jobs.put((STOP, next(self._order), None))
        for thread in threads:
            thread.join(timeout=30)
        with self._spawn_cv:
            self._spawn_cv.notify_all()
        for spawner in self._spawners:
            spawner.join(timeout=30)
        with self._mother_lock:
            if self._mother is not None:
                self._mother.kill()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(abort=exc_type is not None)

    def _fail_queued(self) -> None:
        while True:
            try:
                _, _, job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(SandboxError("the sandbox closed before this job ran"))

    # Drivers ---------------------------------------------------------------------------------

    def _enqueue(self, job: _Job) -> Future:
        nested = getattr(_in_handler, "sandbox", None) is self
        with self._lock:  # never queued after close() has failed what was queued
            if self._closed:
                raise SandboxError("the sandbox is closed")
            self._jobs.put((NESTED if nested else QUEUED, next(self._order), job))
        if nested:
            self._add_driver_for_nested()
        else:
            self._grow()
        return job.future

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
            if (not self._closed and self._idle == 0 and not self._jobs.empty()
                    and len(self._threads) < self.max_inflight
                    and self._held + self._wanting < self.workers):
                self._add_driver()

    def _add_driver_for_nested(self) -> None:
        """A nested job never waits for a busy driver: if none is idle, one more starts, past
        `max_inflight` if need be (see the module's docstring). It stays for later jobs."""
        with self._lock:
            if not self._closed and self._idle == 0:
                self._add_driver()

    def _take_slot(self) -> None:
        with self._lock:
            self._wanting += 1
        self._slots.acquire()
        with self._lock:
            self._wanting -= 1
            self._held += 1

    def _give_slot(self, early: bool) -> None:
        with self._lock:
            self._held -= 1
        self._slots.release()
        if early:
            self._grow()

    def _mother_zygote(self) -> _Mother:
        with self._mother_lock:
            if self._mother is None or not self._mother.alive():
                if self._mother is not None:
                    self._mother.kill()
                self._mother = _Mother(self._isolation)
            return self._mother

    def _start_zygote(self) -> _Zygote:
        if self._isolation.uses_mother and not self._mother_failed:
            try:
                zygote = _Zygote(self._isolation, mother=self._mother_zygote())
                with self._lock:
                    self._zygote_starts += 1
                return zygote
            except (SandboxError, OSError):
                if self._mother is not None and self._mother.alive():
                    raise  # a passing failure: the spawner tries again
                self._mother_failed = True  # from now on, one bubblewrap per zygote
        try:
            zygote = _Zygote(self._isolation)
        except (SandboxError, OSError) as err:
            if self._isolation.mode == "rlimits":
                raise SandboxError(f"cannot start the sandbox: {err}") from err
            # Namespaces refused on this machine: say so in every verdict from now on.
            self._isolation = fallback(self._isolation, str(err))
            zygote = _Zygote(self._isolation)
        with self._lock:
            self._zygote_starts += 1
        return zygote

    def _spawn_zygotes(self, first: bool) -> None:
        """Keep `_spares` warm zygotes beyond the drivers waiting for one. A few of these threads
        run at once: under load a zygote takes a while to start, and a burst of long runs
        (each holding its zygote) needs many at once."""
        if first:
            try:
                self._spare.put(self._start_zygote())
            except BaseException as err:  # noqa: BLE001 - raised by the constructor
                self._first_error = err
                return
            finally:
                self._first_ready.set()
        while True:
            with self._spawn_cv:
                while (not self._closed and self._spare.qsize() + self._spawning - self._takers
                       >= self._spares):
                    self._spawn_cv.wait()
                if self._closed:
                    break
                self._spawning += 1
            try:
                self._spare.put(self._start_zygote())
            except (SandboxError, OSError):
                time.sleep(0.5)
            finally:
                with self._spawn_cv:
                    self._spawning -= 1
                    self._spawn_cv.notify_all()
        while True:
            try:
                self._spare.get_nowait().kill()
            except queue.Empty:
                return

    def _take_zygote(self) -> _Zygote:
        with self._spawn_cv:
            self._takers += 1
            self._spawn_cv.notify_all()
        try:
            while True:
                try:
                    zygote = self._spare.get(timeout=1.0)
                except queue.Empty:
                    if self._closed or not any(t.is_alive() for t in self._spawners):
                        raise SandboxError("the sandbox is closed") from None
                    continue
                if zygote.alive():
                    return zygote
                zygote.kill()
        finally:
            with self._spawn_cv:
                self._takers -= 1
                self._spawn_cv.notify_all()

    def _drive(self, slot: int) -> None:
        try:
            zygote = self._take_zygote()  # warm before the first job arrives
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
                    result = _harness_error(f"{type(err).__name__}: {err}", self.isolation)
                    if job.mode == "check":
                        result = _all_failed(result, len(job.tests), "harness_error")
                job.future.set_result(result)
        finally:
            if zygote is not None:
                zygote.kill()

    def _execute(self, slot: int, zygote: _Zygote | None, job: _Job):
        if job.mode == "exec":
            attempt, zygote = self._attempt(slot, zygote, job, 0, job.limits.timeout_s)
            return _exec_result(attempt, self._describe(slot)), zygote
        return self._check(slot, zygote, job)

    def _describe(self, slot: int) -> dict:
        uid = FIRST_UID + slot if self._isolation.sets_uid else None
        return self._isolation.describe(uid)

    def _check(self, slot: int, zygote, job: _Job):
        total = len(job.tests)
        outcome: dict[int, TestResult] = {}
        start, budget = 0, job.limits.timeout_s
        wall = rpc_wait = 0.0
        stdout, stderr = bytearray(), bytearray()
        truncated = False
        last = None
        while True:
            attempt, zygote = self._attempt(slot, zygote, job, start, budget)
            last = attempt
            wall += attempt.wall_s
            rpc_wait += attempt.rpc_wait_s
            budget -= attempt.wall_s - attempt.rpc_wait_s
            stdout += attempt.stdout
            stderr += attempt.stderr
            truncated |= attempt.truncated
            run = _exec_result(attempt, self._describe(slot))
            if attempt.tampered:
                return _all_failed(run, total, "harness_error"), zygote
            kinds = [r.get("k") for r in attempt.records]
            if "loaded" not in kinds:
                return _load_failure(run, attempt, total), zygote
            current = None
            for record in attempt.records:
                if record.get("k") == "begin":
                    current = record.get("i")
                elif record.get("k") == "end":
                    index = record.get("i")
                    outcome[index] = TestResult(index, record.get("status", "error"),
                                                record.get("type") or None, record.get("msg") or None)
                    current = None
            if "done" in kinds:
                break
            if current is None:  # died between tests: blame the next one
                current = max(outcome, default=start - 1) + 1
            if current >= total:
                break
            died = run.status if run.status not in ("ok", "error") else "exited"
            outcome[current] = TestResult(current, died, run.error_type, run.error_message
                                          or _died_message(run))
            start = current + 1
            if start >= total or budget <= 0:
                break
        results = tuple(outcome.get(i) or TestResult(i, "not_run", None, "not run: time budget spent")
                        for i in range(total))
        passed = sum(r.passed for r in results)
        run = _exec_result(last, self._describe(slot))
        run = _replace_run(run, stdout, stderr, truncated, wall, rpc_wait, job.limits.output_bytes)
        status = "passed" if passed == total else "failed"
        return CheckResult(status, passed, total - passed, total, results, run), zygote

    # One child -------------------------------------------------------------------------------

    def _attempt(self, slot: int, zygote: _Zygote | None, job: _Job, start: int,
                 budget_s: float) -> tuple[_Attempt, _Zygote | None]:
        # The zygote first, then the CPU slot: waiting for a fresh zygote must not hold a slot.
        if zygote is None or not zygote.alive():
            if zygote is not None:
                zygote.kill()
            zygote = self._take_zygote()
        self._take_slot()
        run = _Run(self, zygote, slot, job, start, budget_s)
        try:
            attempt, healthy = run.go()
        finally:
            if run.attempt.holding:  # the run may have given its slot back already
                self._give_slot(early=False)
        if not healthy:
            zygote.kill()
            zygote = None
        return attempt, zygote


class _Run:
    """The parent's side of one child: pipes, records, RPC, deadlines, the kill."""

    def __init__(self, sandbox: Sandbox, zygote: _Zygote, slot: int, job: _Job, start: int,
                 budget_s: float):
        self.sb, self.zygote, self.job, self.start = sandbox, zygote, job, start
        self.budget_s = budget_s
        self.slot_index = slot
        self.attempt = _Attempt()
        self.nonce = secrets.token_bytes(16)
        self.prefix = self.nonce.hex().encode() + b" "
        self.answers: queue.Queue = queue.Queue()
        self.outstanding = 0
        self.rpc_since = 0.0
        self.test_began: float | None = None
        self.rpc_in_test = 0.0

    def go(self) -> tuple[_Attempt, bool]:
        job, limits = self.job, self.job.limits
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        rec_r, rec_w = os.pipe()
        req_r, req_w = os.pipe()
        ans_r, ans_w = os.pipe()
        wake_r, wake_w = os.pipe()
        self.wake_w = wake_w
        fds_used = [rec_fd := 100 + secrets.randbelow(800)]
        rpc_fds = []
        while len(rpc_fds) < 2:
            fd = 100 + secrets.randbelow(800)
            if fd not in fds_used:
                fds_used.append(fd)
                rpc_fds.append(fd)
        payload = {
            "mode": job.mode, "source": job.source, "tests": job.tests, "start": self.start,
            "test_timeout_s": job.test_timeout_s, "limits": limits.for_child(),
            "nonce": self.nonce.hex(), "rec_fd": rec_fd, "rpc_fds": rpc_fds,
            "uid": FIRST_UID + self.slot_index if self.zygote.isolation.sets_uid else None,
            "private_tmp": self.zygote.isolation.sets_uid,
            "quantum_s": QUANTUM_S,
        }
        began = time.monotonic()
        try:
            self.zygote.send_job(payload, [out_w, err_w, rec_w, req_w, ans_r])
        except OSError:
            for fd in (out_r, out_w, err_r, err_w, rec_r, rec_w, req_r, req_w, ans_r, ans_w,
                       wake_r, wake_w):
                os.close(fd)
            self.attempt.zygote_lost = True
            self.attempt.status = "harness_error"
            return self.attempt, False
        for fd in (out_w, err_w, rec_w, req_w, ans_r):
            os.close(fd)
        os.set_blocking(ans_w, False)
        try:
            healthy = self._loop(began, out_r, err_r, rec_r, req_r, ans_w, wake_r)
        finally:
            for fd in (out_r, err_r, rec_r, req_r, ans_w, wake_r, wake_w):
                os.close(fd)
        self.attempt.wall_s = time.monotonic() - began
        return self.attempt, healthy

    # The loop --------------------------------------------------------------------------------

    def _loop(self, began, out_r, err_r, rec_r, req_r, ans_w, wake_r) -> bool:
        att, limits = self.attempt, self.job.limits
        sock = self.zygote.sock
        open_fds = {out_r: "out", err_r: "err", rec_r: "rec", req_r: "req"}
        rec_buf, req_buf, pending_answer = bytearray(), bytearray(), bytearray()
        self.rec_buf = rec_buf
        demote_at = began + QUANTUM_S
        killed_for: str | None = None
        while True:
            now = time.monotonic()
            if self.sb._aborting:
                return self._kill("harness_error", open_fds)
            # Deadlines, on the clock that excludes RPC waits.
            if killed_for is None and self.outstanding == 0:
                used = now - began - att.rpc_wait_s
                if used >= self.budget_s:
                    killed_for = "timeout"
                elif self.test_began is not None and (
                        now - self.test_began - self.rpc_in_test
                        >= self.job.test_timeout_s + TEST_GRACE_S):
                    killed_for = "timeout"
                if killed_for:
                    return self._kill(killed_for, open_fds)
            if att.holding and now >= demote_at and self.outstanding == 0:
                self._release_slot()
            waits = [0.5]
            if self.outstanding == 0:
                waits.append(self.budget_s - (now - began - att.rpc_wait_s))
                if self.test_began is not None:
                    waits.append(self.job.test_timeout_s + TEST_GRACE_S
                                 - (now - self.test_began - self.rpc_in_test))
            if att.holding:
                waits.append(demote_at - now)
            if self.zygote.has_message():
                waits = [0.0]
            readers = list(open_fds) + [wake_r] + ([] if att.report else [sock])
            writers = [ans_w] if pending_answer else []
            ready, writable, _ = select.select(readers, writers, [], max(0.0, min(waits)))
            if wake_r in ready:
                os.read(wake_r, 4096)
            self._collect_answers(pending_answer)
            if writable and pending_answer:
                try:
                    written = os.write(ans_w, pending_answer)
                    del pending_answer[:written]
                except BlockingIOError:
                    pass
                except OSError:
                    pending_answer.clear()
            for fd in ready:
                name = open_fds.get(fd)
                if name is None:
                    continue
                chunk = os.read(fd, _READ)
                if not chunk:
                    del open_fds[fd]
                    continue
                if name in ("out", "err"):
                    buf = att.stdout if name == "out" else att.stderr
                    room = limits.output_bytes - len(buf)
                    buf += chunk[:max(0, room)]
                    if len(chunk) > room:
                        att.truncated = True
                        return self._kill("output_limit", open_fds)
                elif name == "rec":
                    rec_buf += chunk
                    if len(rec_buf) > 1 << 20 or not self._records(rec_buf):
                        return self._kill("harness_error", open_fds)
                else:
                    req_buf += chunk
                    if len(req_buf) > limits.rpc_bytes + 1 or not self._requests(req_buf, pending_answer):
                        return self._kill("harness_error", open_fds)
            if (sock in ready or self.zygote.has_message()) and att.report is None:
                message = self.zygote.read_message(0.0 if not sock in ready else 1.0)
                if message is None:
                    att.zygote_lost = True
                    return self._kill("crash", open_fds)
                att.report = message
            if att.report is not None and not open_fds:
                return att.report.get("survivors", 0) == 0 and not att.tampered
            if att.report is not None:
                # The child and everything it started are gone; the pipes hold the rest.
                self._drain(open_fds, rec_buf, att)
                return att.report.get("survivors", 0) == 0 and not att.tampered

    def _drain(self, open_fds, rec_buf, att) -> None:
        limits = self.job.limits
        for fd in list(open_fds):
            os.set_blocking(fd, False)
            name = open_fds[fd]
            while True:
                try:
                    chunk = os.read(fd, _READ)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                if name in ("out", "err"):
                    buf = att.stdout if name == "out" else att.stderr
                    room = limits.output_bytes - len(buf)
                    buf += chunk[:max(0, room)]
                    if len(chunk) > room:
                        att.truncated = True
                        att.status = att.status or "output_limit"
                        break
                elif name == "rec":
                    rec_buf += chunk
                    if len(rec_buf) > 1 << 20 or not self._records(rec_buf):
                        break
            del open_fds[fd]

    def _kill(self, why: str, open_fds) -> bool:
        """Stop the child. First the cheap way: the zygote kills everything in its namespace
        and reports; a zygote that does not answer at once is in doubt and dies with it."""
        att = self.attempt
        if self.sb._aborting:
            att.aborted, why = True, "harness_error"
        att.status = att.status or why
        if att.report is None and not att.zygote_lost:
            try:
                self.zygote.sock.send(b"K")
                report = self.zygote.read_message(ZYGOTE_ANSWER_S)
            except OSError:
                report = None
            if report is not None and report.get("ev") == "exit":
                att.report = report
                self._drain(open_fds, self.rec_buf, att)
                return report.get("survivors", 0) == 0 and not att.tampered
        self.zygote.kill()
        # The namespace is going; its processes hold the pipes' write ends, so end of file on
        # every pipe means nothing the candidate started is alive. Wait for that, briefly.
        deadline = time.monotonic() + KILL_WAIT_S
        while open_fds and time.monotonic() < deadline:
            ready, _, _ = select.select(list(open_fds), [], [], deadline - time.monotonic())
            for fd in ready:
                if not os.read(fd, _READ):
                    del open_fds[fd]
        return False

    def _release_slot(self) -> None:
        if self.attempt.holding:
            self.attempt.holding = False
            self.sb._give_slot(early=True)

    # Records -----------------------------------------------------------------------------------

    def _records(self, buf: bytearray) -> bool:
        """Parse complete record lines; False (and `tampered`) on anything not from the runner."""
        att = self.attempt
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            del buf[:len(line) + 1]
            if not line.startswith(self.prefix):
                att.tampered = "a record without this run's nonce reached the record channel"
                return False
            try:
                record = json.loads(line[len(self.prefix):])
            except ValueError:
                att.tampered = "a malformed record reached the record channel"
                return False
            if not isinstance(record, dict) or not self._in_sequence(record):
                att.tampered = f"a record out of sequence: {str(record)[:200]}"
                return False
            att.records.append(record)
        return True

    def _in_sequence(self, record: dict) -> bool:
        kinds = [r.get("k") for r in self.attempt.records]
        kind = record.get("k")
        last = kinds[-1] if kinds else None
        if kind == "start":
            return last is None
        if kinds and kinds[-1] in ("exit", "exc", "done", "load_error"):
            return False
        if self.job.mode == "exec":
            return kind in ("exit", "exc") and last == "start"
        if kind in ("loaded", "load_error"):
            return last == "start"
        if kind == "begin":
            expected = self.start if last == "loaded" else None
            if last == "end":
                expected = self.attempt.records[-1].get("i") + 1
            ok = record.get("i") == expected and expected < len(self.job.tests)
            if ok:
                self.test_began, self.rpc_in_test = time.monotonic(), 0.0
            return ok
        if kind == "end":
            ok = last == "begin" and record.get("i") == self.attempt.records[-1].get("i")
            self.test_began = None
            return ok
        if kind == "done":
            if last not in ("end", "loaded") or record.get("n") != len(self.job.tests):
                return False
            ran = [r.get("i") for r in self.attempt.records if r.get("k") == "end"]
            return ran == list(range(self.start, len(self.job.tests)))
        return False

    # RPC ---------------------------------------------------------------------------------------

    def _requests(self, buf: bytearray, pending_answer: bytearray) -> bool:
        while b"\n" in buf:
            line, _, _ = bytes(buf).partition(b"\n")
            del buf[:len(line) + 1]
            try:
                request = json.loads(line)
                ident, method = request["id"], request["method"]
                payload = request.get("payload")
                if not isinstance(method, str):
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                self.attempt.tampered = "a malformed request reached the RPC channel"
                return False
            if self.job.rpc is None:
                pending_answer += _answer(ident, False, "no RPC handler in this sandbox run",
                                          self.job.limits.rpc_bytes)
                continue
            if self.outstanding >= MAX_RPC_OUTSTANDING:
                pending_answer += _answer(ident, False, "too many RPC calls in flight",
                                          self.job.limits.rpc_bytes)
                continue
            if self.outstanding == 0:
                self.rpc_since = time.monotonic()
                self._release_slot()
            self.outstanding += 1
            threading.Thread(target=self._handle, args=(ident, method, payload), daemon=True,
                             name="flowmend-rpc").start()
        return True

    def _handle(self, ident, method: str, payload) -> None:
        _in_handler.sandbox = self.sb
        try:
            result = self.job.rpc(method, payload)
            answer = _answer(ident, True, result, self.job.limits.rpc_bytes)
        except BaseException as err:  # noqa: BLE001 - the child gets it as RPCError
            answer = _answer(ident, False, f"{type(err).__name__}: {err}", self.job.limits.rpc_bytes)
        finally:
            _in_handler.sandbox = None
        self.answers.put(answer)
        try:
            os.write(self.wake_w, b"!")
        except OSError:
            pass

    def _collect_answers(self, pending_answer: bytearray) -> None:
        while True:
            try:
                answer = self.answers.get_nowait()
            except queue.Empty:
                return
            self.outstanding -= 1
            if self.outstanding == 0:
                waited = time.monotonic() - self.rpc_since
                self.attempt.rpc_wait_s += waited
                if self.test_began is not None:
                    self.rpc_in_test += waited
            pending_answer += answer


def _answer(ident, ok: bool, value, limit: int) -> bytes:
    body = {"id": ident, "ok": ok, ("result" if ok else "error"): value}
    try:
        line = json.dumps(body).encode() + b"\n"
    except (TypeError, ValueError) as err:
        line = json.dumps({"id": ident, "ok": False,
                           "error": f"handler answer is not JSON: {err}"}).encode() + b"\n"
    if len(line) > limit:
        line = json.dumps({"id": ident, "ok": False,
                           "error": f"answer of {len(line)} bytes exceeds {limit}"}).encode() + b"\n"
    return line


# --- verdicts -----------------------------------------------------------------------------------


def _decode(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


def _exec_result(att: _Attempt, isolation: dict) -> ExecResult:
    report = att.report or {}
    exit_code = report.get("exit_code")
    sig = report.get("signal")
    kinds = {r.get("k"): r for r in att.records}
    error_type = message = tail = None
    if att.aborted:
        status, error_type = "harness_error", "SandboxClosed"
        message = "the sandbox closed on an error while this ran"
    elif att.tampered:
        status, error_type, message = "harness_error", "Tampering", att.tampered
    elif att.status:
        status = att.status
        if att.zygote_lost:
            error_type, message = "ZygoteLost", "the sandbox zygote died (the candidate killed it?)"
    elif sig is not None:
        status = "timeout" if sig == signal.SIGXCPU else "crash"
        error_type, message = "Signal", signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
    elif "exc" in kinds or "load_error" in kinds:
        rec = kinds.get("exc") or kinds.get("load_error")
        error_type, message, tail = rec.get("type"), rec.get("msg"), rec.get("tb")
        status = "memory" if error_type == "MemoryError" else "error"
    elif exit_code not in (None, 0):
        status, error_type = "error", "SystemExit"
        message = f"exit code {exit_code}"
    elif exit_code == 0:
        status = "ok"
    else:
        status = "harness_error"
        error_type, message = "NoReport", "the zygote gave no exit report"
    if status == "crash" and not message:
        message = "the process died"
    return ExecResult(
        status=status, exit_code=exit_code, signal=sig, stdout=_decode(att.stdout),
        stderr=_decode(att.stderr), truncated=att.truncated, wall_s=round(att.wall_s, 4),
        rpc_wait_s=round(att.rpc_wait_s, 4), cpu_s=report.get("cpu_s"), isolation=isolation,
        error_type=error_type, error_message=message, traceback_tail=tail,
    )


def _replace_run(run: ExecResult, stdout, stderr, truncated, wall, rpc_wait, cap) -> ExecResult:
    from dataclasses import replace

    return replace(run, stdout=_decode(stdout[:cap]), stderr=_decode(stderr[:cap]),
                   truncated=truncated, wall_s=round(wall, 4), rpc_wait_s=round(rpc_wait, 4))


def _died_message(run: ExecResult) -> str:
    if run.status == "timeout":
        return "test timed out"
    if run.signal:
        return f"killed by signal {run.signal}"
    return f"the process exited (code {run.exit_code}) in the middle of this test"


def _harness_error(message: str, isolation: dict) -> ExecResult:
    return ExecResult(status="harness_error", isolation=isolation, error_type="HarnessError",
                      error_message=message)


def _all_failed(run: ExecResult, total: int, status: str) -> CheckResult:
    results = tuple(TestResult(i, "not_run", run.error_type, run.error_message) for i in range(total))
    return CheckResult(status, 0, total, total, results, run)


def _load_failure(run: ExecResult, att: _Attempt, total: int) -> CheckResult:
    status = run.status
    if status == "ok":  # exited cleanly before its tests ran: os._exit(0) and the like
        status = "error"
        from dataclasses import replace

        run = replace(run, status="error", error_type="EarlyExit",
                      error_message=f"the program exited (code {run.exit_code}) before its tests ran")
    results = tuple(TestResult(i, "not_run", run.error_type, run.error_message) for i in range(total))
    return CheckResult(status, 0, total, total, results, run)
