"""One run: the parent's side of one forked child, a select loop over its pipes and its zygote.

    child  --- stdout, stderr ----------> kept up to the output cap
           --- records, nonce-tagged ---> checked in order: start, loaded, begin i, end i, done n
           --- RPC requests ------------> a handler thread per call ---+
           <-- RPC answers --------------------------------------------+ (and a wake-up byte)
    zygote --- exit report -------------> the child and everything it started are gone

The loop keeps the run's clock (`_clock`: RPC work counts, waits for the model do not), gives
the run's CPU slot back once it has run a quantum or waits on the handler, and kills the child
on timeout, output flood or tampering.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import select
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from flowmend.sandbox._clock import RunClock
from flowmend.sandbox._inner import flowmend_wire as wire
from flowmend.sandbox._isolation import FIRST_UID
from flowmend.sandbox._job import Attempt, Job
from flowmend.sandbox._zygotes import KILL_WAIT_S, Zygote

if TYPE_CHECKING:
    from flowmend.sandbox._drivers import Drivers

QUANTUM_S = 0.2  # a run holding a CPU slot longer than this gives it back
TEST_GRACE_S = 0.25  # the parent's kill comes this long after a test's own alarm
MAX_RPC_OUTSTANDING = 64
RECORD_BYTES = 1 << 20  # unread record bytes past this are tampering
_READ = 1 << 16

# The run whose RPC handler this thread is running, if any (`run`), and whether the handler is
# in a model wait (`waiting`). A job submitted from here is one that a running execution waits for.
_in_handler = threading.local()


def handler_context() -> "tuple[Drivers | None, int]":
    """The drivers whose RPC handler the calling thread is running, and the nesting depth of
    the job it serves; (None, 0) outside handlers."""
    run = getattr(_in_handler, "run", None)
    return (None, 0) if run is None else (run.host, run.job.depth)


@contextmanager
def model_wait() -> Iterator[None]:
    """Mark time an RPC handler spends waiting for the model, which the run's timeout excludes.

    Everything else a handler does counts against the timeout of the run that called it
    (a nested sandbox run above all). Outside a handler's own thread this does nothing.
    """
    run = getattr(_in_handler, "run", None)
    if run is None or getattr(_in_handler, "waiting", False):
        yield
        return
    _in_handler.waiting = True
    run.clock.wait(time.monotonic(), started=True)
    try:
        yield
    finally:
        _in_handler.waiting = False
        if run.clock.wait(time.monotonic(), started=False):
            run.wake()  # the clock runs again: its deadline is the loop's to watch


class Run:
    """The parent's side of one child: pipes, records, RPC, deadlines, the kill."""

    def __init__(self, host: "Drivers", zygote: Zygote, slot: int, job: Job, start: int,
                 budget_s: float):
        self.host, self.zygote, self.job, self.start = host, zygote, job, start
        self.budget_s = budget_s
        self.slot_index = slot
        self.attempt = Attempt()
        self.nonce = secrets.token_bytes(16)
        self.prefix = self.nonce.hex().encode() + b" "
        self.rec_buf = bytearray()
        self.answers: queue.Queue = queue.Queue()
        self.outstanding = 0
        self.clock = RunClock(time.monotonic())
        self.test_began: float | None = None
        self.stopped_at_test = 0.0  # the clock's stopped seconds when the test began
        self._wake_lock = threading.Lock()
        self._ended = False  # the wake pipe is closed: a late handler must not write to it

    def go(self) -> tuple[Attempt, bool]:
        """Send the job to the zygote and supervise the child; what was seen, and whether the
        zygote is fit for another job."""
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
        self.clock = RunClock(began)
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
            with self._wake_lock:
                # Handlers may outlive the run (the child was killed while they ran); the
                # number of a closed pipe is soon another run's descriptor.
                self._ended = True
            for fd in (out_r, err_r, rec_r, req_r, ans_w, wake_r, wake_w):
                os.close(fd)
        ended = time.monotonic()
        self.attempt.wall_s = ended - began
        self.attempt.rpc_wait_s = self.clock.stopped_s(ended)
        return self.attempt, healthy

    def wake(self) -> None:
        """Wake the loop from another thread (a handler's answer, the clock running again)."""
        with self._wake_lock:
            if not self._ended:
                try:
                    os.write(self.wake_w, b"!")
                except OSError:
                    pass

    # The loop --------------------------------------------------------------------------------

    def _loop(self, began, out_r, err_r, rec_r, req_r, ans_w, wake_r) -> bool:
        att, limits = self.attempt, self.job.limits
        sock = self.zygote.sock
        open_fds = {out_r: "out", err_r: "err", rec_r: "rec", req_r: "req"}
        req_buf, pending_answer = bytearray(), bytearray()
        demote_at = began + QUANTUM_S
        killed_for: str | None = None
        test_limit_s = self.job.test_timeout_s + TEST_GRACE_S
        while True:
            now = time.monotonic()
            if self.host.aborting:
                return self._kill("harness_error", open_fds)
            # Deadlines, on the run's clock, which stands still only while it waits for the model.
            running = self.clock.running
            if killed_for is None and running:
                if self.clock.used_s(now) >= self.budget_s:
                    killed_for = "timeout"
                elif self.test_began is not None and self._test_used_s(now) >= test_limit_s:
                    killed_for = "timeout"
                if killed_for:
                    return self._kill(killed_for, open_fds)
            if att.holding and now >= demote_at and self.outstanding == 0:
                self._release_slot()
            waits = [0.5]
            if running:
                waits.append(self.budget_s - self.clock.used_s(now))
                if self.test_began is not None:
                    waits.append(test_limit_s - self._test_used_s(now))
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
                if name == "req":
                    req_buf += chunk
                    if (len(req_buf) > limits.rpc_bytes + 1
                            or not self._requests(req_buf, pending_answer)):
                        return self._kill("harness_error", open_fds)
                elif (why := self._take(name, chunk)) is not None:
                    return self._kill(why, open_fds)
            if (sock in ready or self.zygote.has_message()) and att.report is None:
                message = self.zygote.read_message(0.0 if sock not in ready else 1.0)
                if message is None:
                    att.zygote_lost = True
                    return self._kill("crash", open_fds)
                att.report = message
            if att.report is not None and not open_fds:
                return att.report.get("survivors", 0) == 0 and not att.tampered
            if att.report is not None:
                # The child and everything it started are gone; the pipes hold the rest.
                self._drain(open_fds)
                return att.report.get("survivors", 0) == 0 and not att.tampered

    def _test_used_s(self, now: float) -> float:
        return now - self.test_began - (self.clock.stopped_s(now) - self.stopped_at_test)

    def _take(self, name: str, chunk: bytes) -> str | None:
        """Keep a chunk of stdout, stderr or records; the status to stop the child with when
        it passed the output cap ("output_limit") or broke the record protocol."""
        att = self.attempt
        if name == "rec":
            self.rec_buf += chunk
            if len(self.rec_buf) > RECORD_BYTES or not self._records(self.rec_buf):
                return "harness_error"
            return None
        buf = att.stdout if name == "out" else att.stderr
        room = self.job.limits.output_bytes - len(buf)
        buf += chunk[:max(0, room)]
        if len(chunk) > room:
            att.truncated = True
            return "output_limit"
        return None

    def _drain(self, open_fds) -> None:
        """Read what the pipes still hold once the child is gone (requests are not answered)."""
        att = self.attempt
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
                if name == "req":
                    continue
                why = self._take(name, chunk)
                if why == "output_limit":
                    att.status = att.status or why
                if why is not None:
                    break
            del open_fds[fd]

    def _kill(self, why: str, open_fds) -> bool:
        """Stop the child. First the cheap way: the zygote kills everything in its namespace
        and reports; a zygote that does not answer at once is in doubt and dies with it."""
        att = self.attempt
        if self.host.aborting:
            att.aborted, why = True, "harness_error"
        att.status = att.status or why
        if att.report is None and not att.zygote_lost:
            report = self.zygote.kill_child()
            if report is not None and report.get("ev") == "exit":
                att.report = report
                self._drain(open_fds)
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
            self.host.give_slot(early=True)

    # Records -----------------------------------------------------------------------------------

    def _records(self, buf: bytearray) -> bool:
        """Parse complete record lines; False (and `tampered`) on anything not from the runner."""
        att = self.attempt
        while (line := wire.next_line(buf)) is not None:
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
                self.test_began = time.monotonic()
                self.stopped_at_test = self.clock.stopped_s(self.test_began)
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
        while (line := wire.next_line(buf)) is not None:
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
                self._release_slot()
            self.outstanding += 1
            self.clock.call(time.monotonic(), started=True)
            threading.Thread(target=self._handle, args=(ident, method, payload), daemon=True,
                             name="flowmend-rpc").start()
        return True

    def _handle(self, ident, method: str, payload) -> None:
        _in_handler.run, _in_handler.waiting = self, False
        try:
            result = self.job.rpc(method, payload)
            answer = _answer(ident, True, result, self.job.limits.rpc_bytes)
        except BaseException as err:  # noqa: BLE001 - the child gets it as RPCError
            answer = _answer(ident, False, f"{type(err).__name__}: {err}",
                             self.job.limits.rpc_bytes)
        finally:
            _in_handler.run = None
            if _in_handler.waiting:  # a model wait left open (a generator never closed)
                _in_handler.waiting = False
                self.clock.wait(time.monotonic(), started=False)
        self.clock.call(time.monotonic(), started=False)
        self.answers.put(answer)
        self.wake()

    def _collect_answers(self, pending_answer: bytearray) -> None:
        while True:
            try:
                answer = self.answers.get_nowait()
            except queue.Empty:
                return
            self.outstanding -= 1
            pending_answer += answer


def _answer(ident, ok: bool, value, limit: int) -> bytes:
    body = {"id": ident, "ok": ok, ("result" if ok else "error"): value}
    try:
        line = wire.encode(body)
    except (TypeError, ValueError) as err:
        line = wire.encode({"id": ident, "ok": False,
                            "error": f"handler answer is not JSON: {err}"})
    if len(line) > limit:
        line = wire.encode({"id": ident, "ok": False,
                            "error": f"answer of {len(line)} bytes exceeds {limit}"})
    return line
