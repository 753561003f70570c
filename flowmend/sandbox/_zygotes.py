"""Zygotes: warm, isolated interpreters that fork one child per run, and the pool that keeps
them ready (a mother zygote forking each into namespaces of its own, spare ones kept warm, a
dead one replaced)."""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import socket
import subprocess
import threading
import time

from flowmend.sandbox._inner import flowmend_wire as wire
from flowmend.sandbox._isolation import Isolation, fallback
from flowmend.sandbox._types import SandboxError

KILL_WAIT_S = 2.0  # a killed namespace must be gone within this
SPARE_ZYGOTES = 2  # warm zygotes kept ready beyond those in use
SPAWNER_THREADS = 4  # zygotes started at once, at most
ZYGOTE_START_S = 10.0  # a mother must fork a new zygote within this
ZYGOTE_ANSWER_S = 1.0  # a zygote asked to kill its child must report within this
_READ = 1 << 16


class Zygote:
    """One warm, isolated interpreter that forks a child per job.

    Started by bubblewrap, or (`mother=`) forked by a mother zygote into namespaces of its own.
    """

    def __init__(self, isolation: Isolation, ready_timeout_s: float = 20.0, *,
                 role: str = "ns", mother: "Mother | None" = None):
        self.isolation = isolation
        self.mother = mother
        self.proc: subprocess.Popen | None = None
        self.init_pidfd = None
        self.pid_in_mother: int | None = None
        self.closed = False
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = parent_end
        self._lines = bytearray()
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
        while (line := wire.next_line(self._lines)) is None:
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
        return json.loads(line)

    def has_message(self) -> bool:
        return b"\n" in self._lines

    def send_job(self, payload: dict, fds: list[int]) -> None:
        data = json.dumps(payload).encode()
        socket.send_fds(self.sock, [wire.JOB + wire.HEADER.pack(len(data))], fds)
        self.sock.sendall(data)

    def kill_child(self) -> dict | None:
        """Ask the zygote to kill everything its child started; its exit report, or None when
        it did not answer at once (then it is in doubt, and should die too)."""
        try:
            self.sock.send(wire.KILL)
            return self.read_message(ZYGOTE_ANSWER_S)
        except OSError:
            return None

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


class Mother(Zygote):
    """A zygote in bubblewrap's namespaces that runs no jobs: it forks new zygotes, each the
    init of fresh pid, net, ipc, uts and mount namespaces, in milliseconds instead of an
    interpreter start; and kills them on request."""

    def __init__(self, isolation: Isolation):
        super().__init__(isolation, role="mother")
        self._call = threading.Lock()

    def spawn(self, fd: int) -> int:
        with self._call:
            try:
                socket.send_fds(self.sock, [wire.SPAWN], [fd])
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
                self.sock.sendall(wire.KILL_ZYGOTE + wire.HEADER.pack(pid))
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


class ZygotePool:
    """Warm zygotes for the drivers, started by a few long-lived spawner threads.

    One long-lived thread starts every zygote it makes (bwrap's --die-with-parent follows the
    *thread* that started it), and the pool keeps a few warm spares, so a driver added when a
    run gives its slot back starts work at once. The first zygote also proves (or disproves)
    that namespaces work here: the constructor raises if it cannot start. `closed` is the
    sandbox's: once set, the spawners stop and `take` fails instead of waiting.
    """

    def __init__(self, isolation: Isolation, closed: threading.Event):
        self.isolation = isolation  # falls back to rlimits if namespaces are refused
        self.starts = 0
        self._closed = closed
        self._lock = threading.Lock()
        self._spare: queue.Queue[Zygote] = queue.Queue()
        self._spawn_cv = threading.Condition()
        self._takers = 0
        self._spares = SPARE_ZYGOTES
        self._first_ready = threading.Event()
        self._first_error: BaseException | None = None
        self._spawning = 0
        self._mother: Mother | None = None
        self._mother_lock = threading.Lock()
        self._mother_failed = False
        self._spawners = [threading.Thread(target=self._spawn_zygotes, args=(i == 0,), daemon=True,
                                           name=f"flowmend-sandbox-spawner-{i}")
                          for i in range(SPAWNER_THREADS)]
        self._spawners[0].start()
        self._first_ready.wait()
        if self._first_error is not None:
            closed.set()
            self._spawners[0].join()
            raise self._first_error
        for spawner in self._spawners[1:]:
            spawner.start()

    def take(self) -> Zygote:
        """A live zygote, waiting for one if none is spare; SandboxError once closed."""
        with self._spawn_cv:
            self._takers += 1
            self._spawn_cv.notify_all()
        try:
            while True:
                try:
                    zygote = self._spare.get(timeout=1.0)
                except queue.Empty:
                    if self._closed.is_set() or not any(t.is_alive() for t in self._spawners):
                        raise SandboxError("the sandbox is closed") from None
                    continue
                if zygote.alive():
                    return zygote
                zygote.kill()
        finally:
            with self._spawn_cv:
                self._takers -= 1
                self._spawn_cv.notify_all()

    def close(self) -> None:
        """Stop the spawners (killing the spares) and the mother; call once `closed` is set."""
        with self._spawn_cv:
            self._spawn_cv.notify_all()
        for spawner in self._spawners:
            spawner.join(timeout=30)
        with self._mother_lock:
            if self._mother is not None:
                self._mother.kill()

    def _mother_zygote(self) -> Mother:
        with self._mother_lock:
            if self._mother is None or not self._mother.alive():
                if self._mother is not None:
                    self._mother.kill()
                self._mother = Mother(self.isolation)
            return self._mother

    def _start_zygote(self) -> Zygote:
        if self.isolation.uses_mother and not self._mother_failed:
            try:
                zygote = Zygote(self.isolation, mother=self._mother_zygote())
                with self._lock:
                    self.starts += 1
                return zygote
            except (SandboxError, OSError):
                if self._mother is not None and self._mother.alive():
                    raise  # a passing failure: the spawner tries again
                self._mother_failed = True  # from now on, one bubblewrap per zygote
        try:
            zygote = Zygote(self.isolation)
        except (SandboxError, OSError) as err:
            if self.isolation.mode == "rlimits":
                raise SandboxError(f"cannot start the sandbox: {err}") from err
            # Namespaces refused on this machine: say so in every verdict from now on.
            self.isolation = fallback(self.isolation, str(err))
            zygote = Zygote(self.isolation)
        with self._lock:
            self.starts += 1
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
                while (not self._closed.is_set()
                       and self._spare.qsize() + self._spawning - self._takers >= self._spares):
                    self._spawn_cv.wait()
                if self._closed.is_set():
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
