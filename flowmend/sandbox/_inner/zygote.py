"""The warm zygote: runs inside the sandbox's namespaces and forks one child per execution.

Stdlib only, started as `python -I -S zygote.py` by the parent (flowmend.sandbox). It never runs
untrusted code itself: each job is a fresh forked child that sets its own limits, drops to an
unprivileged uid, closes every descriptor it was not given, and only then runs the candidate.
After the child ends the zygote kills every other process left in the namespace, so nothing a
candidate started outlives its verdict.
"""

from __future__ import annotations

# Imports done here once are free for every child: the modules candidates use most.
import bisect  # noqa: F401
import collections  # noqa: F401
import ctypes
import functools  # noqa: F401
import hashlib  # noqa: F401
import heapq  # noqa: F401
import io  # noqa: F401
import itertools  # noqa: F401
import json
import math  # noqa: F401
import os
import random  # noqa: F401
import re  # noqa: F401
import resource
import select
import shutil
import signal
import socket
import string  # noqa: F401
import sys
import tempfile
import threading  # noqa: F401
import time
import traceback
import typing  # noqa: F401
import warnings

# Compiling model-written code like `f(x) (y)` makes Python print a SyntaxWarning on the
# zygote's inherited stderr, through the caller's terminal and progress bar: it is not a verdict.
warnings.filterwarnings("ignore", category=SyntaxWarning)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flowmend_rpc  # noqa: E402
import flowmend_wire as wire  # noqa: E402

_LIBC = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_PR_SET_NO_NEW_PRIVS = 38
_MAX_MESSAGE = 1000  # characters kept of an exception message in a record
_TB_LINES = 6
HARNESS_EXIT = 70  # the child's exit code when its set-up (trusted code) failed


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    if sys.argv[2] == "mother":
        _mother(sock)
    else:
        _serve(sock, in_namespace=sys.argv[2] == "ns")


def _serve(sock, in_namespace: bool) -> None:
    """The zygote's loop: one job at a time, each in a fresh forked child."""
    _send(sock, {"ev": "ready", "pid": os.getpid(), "uid": os.getuid()})
    while True:
        job, fds = _receive_job(sock)
        if job is None:
            return
        # Without a private tmpfs per child, each run gets a fresh folder, removed afterwards.
        workdir = None if job["private_tmp"] else tempfile.mkdtemp(prefix="flowmend-run-")
        pid = os.fork()
        if pid == 0:
            try:
                sock.close()
                _child(job, fds, workdir)
            except BaseException:
                # Set-up failed before the candidate ran: the parent reads this as a harness error.
                os.write(fds[1], traceback.format_exc().encode(errors="replace")[-4000:])
            finally:
                os._exit(HARNESS_EXIT)
        for fd in fds:
            os.close(fd)
        report = _supervise(sock, pid, job, in_namespace)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        if in_namespace and not job["private_tmp"]:
            _wipe(("/tmp", "/dev/shm"))  # our own tmpfs: the next run starts from empty
        _send(sock, report)


def _receive_job(sock):
    """The next job: a JOB tag carrying the descriptors, a length, the JSON. A KILL (a kill
    request that crossed our exit report on the way) is stale and skipped."""
    while True:
        tag, fds, _flags, _addr = socket.recv_fds(sock, 1, 8)
        if not tag:
            return None, []
        if tag == wire.JOB:
            break
        for fd in fds:
            os.close(fd)
    header = _recv_exact(sock, wire.HEADER.size)
    if header is None:
        return None, []
    (size,) = wire.HEADER.unpack(header)
    payload = _recv_exact(sock, size)
    if payload is None:
        return None, []
    return json.loads(payload), fds


def _recv_exact(sock, size: int):
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _wipe(folders) -> None:
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def _send(sock, message: dict) -> None:
    sock.sendall(wire.encode(message))


def _supervise(sock, pid: int, job: dict, in_namespace: bool) -> dict:
    """Wait for the child; lower its priority once it runs long; then clear the namespace."""
    pidfd = os.pidfd_open(pid)
    demote_at = time.monotonic() + job["quantum_s"]
    demoted = False
    killed_by_request = False
    while True:
        wait = None if demoted else max(0.0, demote_at - time.monotonic())
        ready, _, _ = select.select([pidfd, sock], [], [], wait)
        if pidfd in ready:
            break
        if sock in ready:
            # The parent only ever sends "kill" mid-run; anything else is a broken parent.
            request = sock.recv(64)
            if not request:
                os.kill(pid, signal.SIGKILL)
                sys.exit(0)
            killed_by_request = True  # KILL: the parent's wall clock ran out, or output did
            _kill_all(pid, in_namespace)
        elif not demoted:
            demoted = True
            try:
                os.setpriority(os.PRIO_PGRP, pid, 10)
            except OSError:
                pass
    os.close(pidfd)
    _, status, usage = os.wait4(pid, 0)
    survivors = _kill_all(pid, in_namespace)
    report = {
        "ev": "exit",
        "exit_code": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_kb": usage.ru_maxrss,
        "killed": killed_by_request,
        "survivors": survivors,
    }
    return report


def _kill_all(pid: int, in_namespace: bool) -> int:
    """Kill the child's whole session; in a namespace, every process but init and us.

    Returns how many processes were still alive after a second of trying (0 when clean).
    """
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    if not in_namespace:
        return 0
    me = os.getpid()
    deadline = time.monotonic() + 1.0
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        # The direct child (perhaps a zombie now) is reaped by our caller; the namespace's init
        # reaps the rest, and that is us when a mother zygote started us.
        others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me, pid)]
        if not others:
            return 0
        if me == 1:
            for other in others:
                try:
                    os.waitpid(int(other), os.WNOHANG)
                except ChildProcessError:
                    pass
        if time.monotonic() > deadline:
            return len(others)
        time.sleep(0.001)


# --- the mother: new zygotes by fork, each in namespaces of its own ---------------------------
#
# Starting a zygote through bubblewrap costs an interpreter start and its imports (tens of
# milliseconds of CPU, far more under load). The mother, itself in bubblewrap's namespaces with
# the imports done, forks a copy into fresh pid, net, ipc, uts and mount namespaces instead, in
# a few milliseconds. It runs no jobs itself.

_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUTS = 0x04000000
_MS_NOEXEC = 0x8


def _mother(sock) -> None:
    _send(sock, {"ev": "ready", "pid": os.getpid(), "uid": os.getuid()})
    while True:
        tag, fds, _flags, _addr = socket.recv_fds(sock, 1, 4)
        if not tag:
            return
        if tag == wire.SPAWN:  # a zygote serving the socket we were given
            try:
                _send(sock, {"ev": "spawned", "pid": _spawn_zygote(fds[0])})
            except Exception as err:  # noqa: BLE001 - reported to the parent
                _send(sock, {"ev": "spawn_failed", "error": f"{type(err).__name__}: {err}"})
        elif tag == wire.KILL_ZYGOTE:  # and report once its namespace is gone
            header = _recv_exact(sock, wire.HEADER.size) or bytes(wire.HEADER.size)
            (pid,) = wire.HEADER.unpack(header)
            _send(sock, {"ev": "gone", "pid": pid, "ok": _kill_zygote(pid)})
        for fd in fds:
            os.close(fd)


def _spawn_zygote(fd: int) -> int:
    """Fork a zygote that is init of new namespaces; returns its pid as we see it."""
    read_end, write_end = os.pipe()
    first = os.fork()
    if first == 0:
        try:
            os.close(read_end)
            flags = _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS | _CLONE_NEWNS
            if _LIBC.unshare(flags) != 0:
                os._exit(1)
            second = os.fork()  # pid 1 of the new pid namespace
            if second == 0:
                os.close(write_end)
                _become_zygote(fd)
            os.write(write_end, str(second).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(first, 0)
    data = os.read(read_end, 32)
    os.close(read_end)
    if not data:
        raise RuntimeError("could not make namespaces for a new zygote")
    return int(data)


def _become_zygote(fd: int) -> None:
    try:
        _LIBC.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None)
        if _LIBC.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None) != 0:
            os._exit(1)
        _LIBC.mount(b"tmpfs", b"/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=1777")
        os.setsid()
        _close_all_but({0, 1, 2, fd})
        _serve(socket.socket(fileno=fd), in_namespace=True)
    finally:
        os._exit(0)


def _kill_zygote(pid: int) -> bool:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        os.kill(pid, signal.SIGKILL)  # init of its namespace: the kernel kills all the rest
        ready, _, _ = select.select([pidfd], [], [], 5.0)
        return bool(ready)
    finally:
        os.close(pidfd)


# --- the child: limits, identity, descriptors, then the candidate --------------------------------


def _child(job: dict, fds: list[int], workdir: str | None) -> None:
    out_fd, err_fd, rec_fd, rpc_out_fd, rpc_in_fd = fds
    os.setsid()
    privileged = os.geteuid() == 0
    limits = job["limits"]
    if privileged and job["private_tmp"]:
        _private_tmp(limits["tmp_mb"])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG instead
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    # The record descriptor moves to a number chosen per run; every other descriptor closes.
    keep = {0, 1, 2}
    rec = _move_fd(rec_fd, job["rec_fd"], keep)
    rpc_out = _move_fd(rpc_out_fd, job["rpc_fds"][0], keep)
    rpc_in = _move_fd(rpc_in_fd, job["rpc_fds"][1], keep)
    _close_all_but(keep)
    _set_limits(limits)  # after the moves: descriptors above RLIMIT_NOFILE stay usable
    if privileged and job["uid"] is not None:
        os.setgroups([])
        os.setresgid(job["uid"], job["uid"], job["uid"])
        os.setresuid(job["uid"], job["uid"], job["uid"])
    _LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.chdir(workdir or "/tmp")
    os.environ.clear()
    flowmend_rpc._connect(rpc_out, rpc_in, limits["rpc_bytes"])
    runner = _Runner(rec, bytes.fromhex(job["nonce"]), limits)
    if job["mode"] == "exec":
        runner.run_program(job["source"])
    else:
        runner.run_checks(job["source"], job["tests"], job["start"], job["test_timeout_s"])


def _private_tmp(size_mb: int) -> None:
    if _LIBC.unshare(_CLONE_NEWNS) != 0:
        return
    _LIBC.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None)
    options = f"size={int(size_mb)}m,mode=1777".encode()
    for target in (b"/tmp", b"/dev/shm"):
        if os.path.isdir(target):
            _LIBC.mount(b"tmpfs", target, b"tmpfs", _MS_NOSUID | _MS_NODEV, options)


def _set_limits(limits: dict) -> None:
    mb = 1 << 20
    wanted = {
        resource.RLIMIT_AS: limits["memory_mb"] * mb,
        resource.RLIMIT_CPU: limits["cpu_s"],
        resource.RLIMIT_FSIZE: limits["file_mb"] * mb,
        resource.RLIMIT_NOFILE: limits["open_files"],
        resource.RLIMIT_NPROC: limits["processes"],
        resource.RLIMIT_CORE: 0,
    }
    for which, value in wanted.items():
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass


def _move_fd(fd: int, target: int, keep: set) -> int:
    os.dup2(fd, target)
    keep.add(target)
    return target


def _close_all_but(keep: set) -> None:
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


class _TestTimeout(BaseException):
    """Raised by the per-test alarm; a BaseException so `except Exception` does not swallow it."""


# str.translate and str slicing are methods of a builtin type: candidate code cannot patch them,
# unlike json's encoder, so records are encoded with them alone.
_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})


class _Runner:
    """The trusted test runner: writes one record per event straight to its descriptor.

    Records are never kept in Python objects a candidate could reach and edit; each is written
    the moment it is known, prefixed with this run's nonce, and the parent checks their
    sequence and count. Everything the runner needs is bound before candidate code runs.
    """

    def __init__(self, fd: int, nonce: bytes, limits: dict):
        self._fd = fd
        self._prefix = nonce.hex().encode() + b" "
        self._write = os.write
        self._exit = os._exit
        self._str = str
        self._isinstance = isinstance
        self._type = type
        self._translate = str.translate
        self._format_tb = traceback.format_exception
        self._setitimer = signal.setitimer
        self._signal = signal.signal
        self._compile = compile
        self._exec = exec
        self._flush = (sys.stdout, sys.stderr)

    # Encoding --------------------------------------------------------------------------------

    def _json(self, value) -> str:
        if value is None:
            return "null"
        if value is True or value is False:
            return "true" if value else "false"
        if self._type(value) is int:
            return int.__repr__(value)
        if self._type(value) is float:
            return float.__repr__(value)
        text = str.__getitem__(value, slice(0, 4 * _MAX_MESSAGE))
        return '"' + self._translate(text, _ESCAPES) + '"'

    def record(self, kind: str, **fields) -> None:
        body = '{"k":' + self._json(kind)
        for key, value in fields.items():
            body += "," + self._json(key) + ":" + self._json(value)
        data = self._prefix + (body + "}\n").encode("utf-8", "backslashreplace")
        try:
            self._write(self._fd, data)
        except OSError:
            self._exit(71)

    def _describe(self, exc: BaseException) -> dict:
        try:
            message = self._str(exc)
            if self._type(message) is not str:
                message = str.__str__(message)
        except BaseException:
            message = "<unprintable exception>"
        try:
            lines = self._format_tb(exc)
            tail = "".join(lines[-_TB_LINES:])
        except BaseException:
            tail = ""
        name = getattr(self._type(exc), "__name__", "Exception")
        if self._type(name) is not str:
            name = "Exception"
        return {
            "type": str.__getitem__(name, slice(0, 200)),
            "msg": str.__getitem__(message, slice(0, _MAX_MESSAGE)),
            "tb": str.__getitem__(tail, slice(0, 4 * _MAX_MESSAGE)),
        }

    def _flush_output(self) -> None:
        for stream in self._flush:
            try:
                stream.flush()
            except BaseException:
                pass

    # Modes -----------------------------------------------------------------------------------

    def _namespace(self) -> dict:
        import builtins
        import types

        module = types.ModuleType("__main__")
        module.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = module
        return module.__dict__

    def run_program(self, source: str) -> None:
        self.record("start")
        namespace = self._namespace()
        try:
            self._exec(self._compile(source, "<candidate>", "exec"), namespace)
        except SystemExit as exc:
            self._flush_output()
            code = exc.code
            if code is None:
                code = 0
            elif self._type(code) is not int:
                code = 1
            self.record("exit", code=code)
            self._exit(code & 0xFF)
        except BaseException as exc:
            self._flush_output()
            self.record("exc", **self._describe(exc))
            self._exit(1)
        self._flush_output()
        self.record("exit", code=0)
        self._exit(0)

    def _on_alarm(self, signum, frame):
        raise _TestTimeout()

    def run_checks(self, source: str, tests: list, start: int, test_timeout_s: float) -> None:
        self.record("start")
        namespace = self._namespace()
        try:
            self._exec(self._compile(source, "<candidate>", "exec"), namespace)
        except BaseException as exc:
            self._flush_output()
            self.record("load_error", **self._describe(exc))
            self._exit(0)
        self.record("loaded")
        for index in range(start, len(tests)):
            self.record("begin", i=index)
            self._signal(signal.SIGALRM, self._on_alarm)
            try:
                self._setitimer(signal.ITIMER_REAL, test_timeout_s)
                self._exec(self._compile(tests[index], f"<test {index}>", "exec"), namespace)
                self._setitimer(signal.ITIMER_REAL, 0)
                status, info = "passed", {}
            except _TestTimeout:
                status, info = "timeout", {"type": "Timeout", "msg": "test timed out", "tb": ""}
            except BaseException as exc:
                self._setitimer(signal.ITIMER_REAL, 0)
                info = self._describe(exc)
                if self._isinstance(exc, AssertionError):
                    status = "failed"
                elif self._isinstance(exc, MemoryError):
                    status = "memory"
                else:
                    status = "error"
            self.record("end", i=index, status=status, **info)
        self._flush_output()
        self.record("done", n=len(tests))
        self._exit(0)


if __name__ == "__main__":
    main()
