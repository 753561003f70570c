"""The evaluation cache: one file per (set-up, library, task, rng seed, model), so a resumed or
repeated trial, or a second worker, re-evaluates nothing already evaluated.

A key is the sha256 of those five values; its record is written atomically under
``<dir>/<key[:2]>/<key>.json``, so a kill leaves either the whole record or none, and workers
on several machines can share the folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from flowmend._files import write_json_atomically


def cache_key(*, setup: str, library: str, task_id: str, rng_seed: int, model: str) -> str:
    text = json.dumps({"setup": setup, "library": library, "task_id": task_id,
                       "rng_seed": rng_seed, "model": model}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class EvalCache:
    """Evaluation records by key; `hits` and `misses` count this process's lookups."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self._path(key).read_text())
        except (OSError, json.JSONDecodeError):
            self.misses += 1
            return None
        self.hits += 1
        return record

    def put(self, key: str, record: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(path, record)

    def records(self):
        """Every record in the cache, whoever wrote it."""
        for path in sorted(self.directory.glob("*/*.json")) if self.directory.is_dir() else ():
            try:
                yield json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json")) if self.directory.is_dir() else 0
