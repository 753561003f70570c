"""The one atomic writer: a file is either its old content or its new content, never half.

Every verb that writes a user-visible file and the bench's run store write through here: a
temporary file beside the target, fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flowmend.errors import UserError

__all__ = ["write_atomically", "write_files_atomically", "write_json_atomically",
           "write_jsonl_atomically"]


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write `data` to `path` all or nothing; a missing directory or a full disk is a `UserError`.

    An existing file keeps its permission bits.
    """
    write_files_atomically({path: data})


def write_files_atomically(files: Mapping[str | Path, str | bytes]) -> None:
    """Write several files all or none (a workflow and the prompt module an edit changed).

    Every file is first written in full to a temporary file beside it; only when all of them
    are written are they renamed over their targets, so a failure while writing (a full disk,
    a missing directory) leaves every target as it was.
    """
    staged: list[tuple[str, Path, Path]] = []
    target = None
    try:
        for path, data in files.items():
            staged.append(_stage(path, data))
        for tmp, target, _ in staged:
            os.replace(tmp, target)
    except OSError as err:
        for tmp, _, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write: {err.strerror or err}",
                        where=str(target) if target else None) from None
    except BaseException:
        for tmp, _, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    for directory in dict.fromkeys(d for _, _, d in staged):
        _fsync_directory(directory)


def _stage(path: str | Path, data: str | bytes) -> tuple[str, Path, Path]:
    """`data` written and synced to a temporary file beside `path`: (temporary, target, folder)."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise UserError("output directory does not exist", where=str(directory))
    mode = target.stat().st_mode & 0o777 if target.exists() else None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise UserError(f"cannot write: {err.strerror or err}", where=str(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write: {err.strerror or err}", where=str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp, target, directory


def write_json_atomically(path: str | Path, data: Any) -> None:
    """JSON with sorted keys and a final newline, written atomically."""
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_jsonl_atomically(path: str | Path, rows: Iterable[dict]) -> None:
    """One JSON object a line, written atomically."""
    write_atomically(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; some file systems cannot open a directory, and then the
    rename is as durable as they make it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
