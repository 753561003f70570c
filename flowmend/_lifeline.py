"""Nothing a flowmend command started outlives it, not even after `kill -9` of the command.

    flowmend (the command)                      lifeline (a small watchdog process)
    ├── vLLM EngineCore ── worker               │ every 0.5 s: the command's descendants
    ├── bwrap (sandbox zygotes)                 │   (pid, start time) → a record file
    └── ...                                     │ pidfd of the command becomes readable
                                                └─→ SIGKILL every recorded descendant
                                                    that is still the same process, and
                                                    every process carrying the command's
                                                    token in its environment; exit

Processes that the command's own `finally` blocks end (a normal exit, Ctrl-C, SIGTERM) are long
gone by then. What `kill -9` leaves behind (vLLM's engine core ignores SIGTERM and is reparented
to init) the lifeline ends within a second. If the lifeline is killed too, its record stays in
`records_dir()`, and the next flowmend command that starts a lifeline ends what the record names
(`reap_stale`), comparing start times so that a reused pid is never killed.

Linux only (`/proc`, `pidfd_open`); elsewhere `start` returns None and nothing is watched.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Lifeline", "StaleReport", "reap_stale", "records_dir", "start"]

TOKEN_VARIABLE = "FLOWMEND_LIFELINE"
SCAN_INTERVAL_S = 0.5


def records_dir() -> Path:
    """Where lifelines keep their records: under the user's cache, one file per command."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "flowmend" / "lifelines"


@dataclass(frozen=True)
class Lifeline:
    """A running watchdog over the current process."""

    pid: int
    record: Path
    process: subprocess.Popen

    def stop(self) -> None:
        """End the watchdog at a normal exit: the command ended what it started itself."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.record.unlink(missing_ok=True)


@dataclass(frozen=True)
class StaleReport:
    """What `reap_stale` found: processes left by commands that died with their lifeline."""

    records: int
    ended: tuple[int, ...]

    def line(self) -> str:
        pids = ", ".join(map(str, self.ended))
        return (f"ended {len(self.ended)} process(es) left running by an earlier flowmend "
                f"command that was killed: {pids}")


def start() -> Lifeline | None:
    """Start the watchdog over this process, after ending what dead commands left behind."""
    if not hasattr(os, "pidfd_open") or not Path("/proc/self/stat").exists():
        return None
    token = os.environ.get(TOKEN_VARIABLE) or secrets.token_hex(8)
    os.environ[TOKEN_VARIABLE] = token  # inherited by every child that keeps our environment
    directory = records_dir()
    directory.mkdir(parents=True, exist_ok=True)
    record = directory / f"{os.getpid()}-{start_time(os.getpid())}.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "flowmend._lifeline", str(os.getpid()), token, str(record)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        close_fds=True, start_new_session=True,  # Ctrl-C to the command's group is not ours
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return Lifeline(os.getpid(), record, process)


def reap_stale(directory: Path | None = None) -> StaleReport:
    """End the processes that records of dead commands name, and drop those records."""
    directory = directory or records_dir()
    ended: list[int] = []
    records = 0
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        try:
            data = json.loads(path.read_text())
            owner, owner_start = int(data["pid"]), int(data["start"])
            watched = {int(p): int(t) for p, t in data["processes"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours: a later command will look again
        if start_time(owner) == owner_start:
            continue  # its command is alive, and so, presumably, its lifeline
        records += 1
        ended.extend(_kill(watched))
        path.unlink(missing_ok=True)
    return StaleReport(records, tuple(sorted(ended)))


# --- the watchdog process ---------------------------------------------------------------------


def _watch(parent: int, token: str, record: Path) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the command's own, normal stop
    parent_start = start_time(parent)
    try:
        pidfd = os.pidfd_open(parent)
    except OSError:
        return  # already gone before we looked
    watched: dict[int, int] = {}
    written = None
    while True:
        watched.update(_descendants(parent))
        watched = {p: t for p, t in watched.items() if start_time(p) == t}
        if watched != written:
            _write_record(record, parent, parent_start, watched)
            written = dict(watched)
        if select.select([pidfd], [], [], SCAN_INTERVAL_S)[0]:
            break
    # The command is gone: its descendants, then anything that still carries its token (a
    # process started between two scans), twice over for children forked meanwhile.
    for _ in range(2):
        _kill(watched)
        watched = _carrying(token)
        if not watched:
            break
        time.sleep(0.05)
    record.unlink(missing_ok=True)


def _write_record(path: Path, parent: int, parent_start: int | None, watched: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"pid": parent, "start": parent_start,
                               "processes": {str(p): t for p, t in watched.items()}}))
    os.replace(tmp, path)


# --- /proc ------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks since boot) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    if fields[0] == "Z":
        return None  # a zombie has exited; only its parent's wait is missing
    return int(fields[1]), int(fields[19])


def start_time(pid: int) -> int | None:
    """The start time of a live process (clock ticks since boot), or None."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def alive(pid: int, start: int) -> bool:
    """Whether `pid` still names the process that started at `start` (clock ticks since boot)."""
    return start_time(pid) == start


def _all_processes() -> dict[int, tuple[int, int]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                out[int(entry)] = stat
    return out


def descendants(root: int, *, cmdline_prefix: bytes | None = None) -> dict[int, int]:
    """The live processes below `root` (not this one), by pid with their start times; only
    those whose command line starts with `cmdline_prefix` when one is given."""
    found = _descendants(root)
    if cmdline_prefix is None:
        return found
    named = {}
    for pid, start in found.items():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(cmdline_prefix):
                named[pid] = start
        except OSError:
            continue
    return named


def _descendants(root: int) -> dict[int, int]:
    table = _all_processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    me = os.getpid()
    found, stack = {}, list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        if pid == me or pid in found:
            continue
        found[pid] = table[pid][1]
        stack.extend(children.get(pid, ()))
    return found


def _carrying(token: str) -> dict[int, int]:
    needle = f"{TOKEN_VARIABLE}={token}".encode()
    me = os.getpid()
    found = {}
    for pid, (_, start) in _all_processes().items():
        if pid == me:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found[pid] = start
    return found


def _kill(watched: dict[int, int]) -> list[int]:
    """SIGKILL each process that is still the one recorded (same start time)."""
    ended = []
    for pid, start in watched.items():
        if start_time(pid) != start:
            continue  # gone, or the pid now names another process
        try:
            os.kill(pid, signal.SIGKILL)
            ended.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return ended


if __name__ == "__main__":
    _watch(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
