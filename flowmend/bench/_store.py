"""The run folder: crash-safe results, the run's identity, and the derived samples files.

``results.jsonl`` is the only state. Each finished (task, method) is one line, written with a
single ``write`` on an ``O_APPEND`` descriptor and fsynced before the next task is reported as
done. A kill at any point leaves at most one torn last line; opening the folder again drops it,
so a resumed run neither loses a finished task nor counts one twice. ``run.json`` records the
arguments that decide the results; a resume with different ones is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flowmend._files import write_json_atomically
from flowmend.errors import UserError

RESULTS = "results.jsonl"
RUN = "run.json"
LOCK = ".lock"
RUN_SCHEMA = "flowmend.bench-run/1"


def read_results(run_dir: Path, *, repair: bool = False) -> list[dict]:
    """The records of a run folder, in the order they finished.

    A last line without its newline, or one that is not JSON, is what a kill leaves behind: it
    is dropped (and, with ``repair``, cut from the file). Damage anywhere else is an error.
    """
    path = Path(run_dir) / RESULTS
    if not path.exists():
        return []
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
    lines = data[:keep].split(b"\n")[:-1]
    records: list[dict] = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if number == len(lines):  # a complete but garbled last line: the same kind of tear
                keep -= len(line) + 1
                break
            raise UserError(f"line {number} is not a JSON record; the run folder is damaged",
                            where=str(path)) from None
        records.append(record)
    if repair and keep != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(keep)
            os.fsync(fh.fileno())
    return records


class RunStore:
    """An open run folder, locked against a second bench process writing to it at once."""

    def __init__(self, run_dir: Path, identity: dict[str, Any]):
        self.dir = Path(run_dir)
        self.identity = identity
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self.records: list[dict] = []

    def __enter__(self) -> "RunStore":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check(self) -> None:
        """Everything `open` would refuse, found without writing anything (no folder, no lock
        file): so a slow start (loading a model) can come after it and before any write."""
        if self.dir.exists() and not self.dir.is_dir():
            raise UserError("exists and is not a folder", where=str(self.dir))
        if not self.dir.exists():
            return
        self._check_identity(write=False)
        if (self.dir / LOCK).exists():
            fd = os.open(self.dir / LOCK, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError("another `flowmend bench` is writing to this run folder",
                                where=str(self.dir)) from None
            finally:
                os.close(fd)  # closing releases the probe's lock
        read_results(self.dir)  # damage inside results.jsonl is an error now, not later

    def open(self) -> None:
        if self.dir.exists() and not self.dir.is_dir():
            raise UserError("exists and is not a folder", where=str(self.dir))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise UserError("another `flowmend bench` is writing to this run folder",
                            where=str(self.dir)) from None
        try:
            self._check_identity()
            self.records = read_results(self.dir, repair=True)
            self._fd = os.open(self.dir / RESULTS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except BaseException:
            self.close()
            raise

    def _check_identity(self, *, write: bool = True) -> None:
        path = self.dir / RUN
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError:
                raise UserError("run.json is not JSON; the run folder is damaged",
                                where=str(path)) from None
            before = old.get("identity", {})
            if before != self.identity:
                keys = sorted(k for k in set(before) | set(self.identity)
                              if before.get(k) != self.identity.get(k))
                shown = "; ".join(f"{k}: was {before.get(k)!r}, now {self.identity.get(k)!r}"
                                  for k in keys[:4])
                raise UserError(
                    f"this folder holds a run with other arguments ({shown}); "
                    "resume with the same arguments or choose another --out",
                    where=str(self.dir),
                )
        elif (self.dir / RESULTS).exists():
            raise UserError("results.jsonl without run.json: not a run folder flowmend wrote",
                            where=str(self.dir))
        elif write:
            write_json_atomically(path, {"schema": RUN_SCHEMA, "identity": self.identity})

    def done(self) -> set[tuple[str, str]]:
        return {(r["task_id"], r["method"]) for r in self.records}

    def append(self, record: dict) -> None:
        """Append one finished (task, method) durably: one write, then fsync."""
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        view = memoryview(line)
        size = os.fstat(self._fd).st_size
        try:
            while view:  # O_APPEND writes of a regular file are whole in practice; loop to be sure
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError as err:
            # A full disk: take the torn line back, so the file ends on a whole record and a
            # resume after space is freed picks up exactly here.
            try:
                os.ftruncate(self._fd, size)
            except OSError:
                pass  # a resume drops a torn last line anyway
            raise UserError(
                f"cannot write a result: {err.strerror or err}; the {len(self.records)} "
                "finished job(s) before it are kept; free space and run the same command to "
                "resume", where=str(self.dir / RESULTS)) from None
        self.records.append(record)

    def update_run_json(self, **extra: Any) -> None:
        """Add run-level facts (timings, throughput) to run.json without touching the identity."""
        path = self.dir / RUN
        data = json.loads(path.read_text())
        data.update(extra)
        data["identity"] = self.identity
        write_json_atomically(path, data)

    def close(self) -> None:
        for attr in ("_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)
                setattr(self, attr, None)


def iter_methods(records: Iterable[dict]) -> Iterator[str]:
    """Method names in first-seen order."""
    seen: set[str] = set()
    for r in records:
        if r["method"] not in seen:
            seen.add(r["method"])
            yield r["method"]
