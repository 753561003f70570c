"""Deterministic train/val/test splits of the benchmark suites.

The default scheme hashes the task id, so a task's split never depends on which other tasks are
loaded, on their order, or on the Python version: ``sha256(task_id)`` read as a big-endian
integer, modulo 10; buckets 0-5 are ``train``, 6-7 ``val``, 8-9 ``test``. MBPP also offers the
split of its paper (``conventional``): task numbers 601-974 train, 511-600 val, 11-510 test,
1-10 ``prompt`` (the few-shot examples, in no split).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import TypeVar

from flowmend.errors import UserError

SPLITS = ("train", "val", "test")
SCHEMES = ("hash", "conventional")

_HASH_BUCKETS = {**dict.fromkeys(range(0, 6), "train"), 6: "val", 7: "val", 8: "test", 9: "test"}
_NUMBER = re.compile(r"(\d+)$")

T = TypeVar("T")


def hash_bucket(task_id: str) -> int:
    """The bucket 0-9 of a task id: sha256 of its UTF-8 bytes, as an integer, modulo 10."""
    return int.from_bytes(hashlib.sha256(task_id.encode("utf-8")).digest(), "big") % 10


def split_of(task_id: str, scheme: str = "hash") -> str:
    """The split (``train``, ``val``, ``test``, or ``prompt`` for MBPP's few-shot ids) of a task."""
    if scheme == "hash":
        return _HASH_BUCKETS[hash_bucket(task_id)]
    if scheme == "conventional":
        match = _NUMBER.search(task_id)
        if not match:
            raise UserError(
                f"task id {task_id!r} has no trailing number; the conventional split is MBPP's"
            )
        number = int(match.group(1))
        if number <= 10:
            return "prompt"
        if number <= 510:
            return "test"
        if number <= 600:
            return "val"
        return "train"
    raise UserError(f"unknown split scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")


def select(
    items: Iterable[T], split: str, *, scheme: str = "hash", task_id=lambda item: item.task_id
) -> list[T]:
    """The items of one split, in their original order. ``split="all"`` keeps everything."""
    if split == "all":
        return list(items)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)} or all")
    return [item for item in items if split_of(task_id(item), scheme) == split]


def counts(task_ids: Sequence[str], scheme: str = "hash") -> dict[str, int]:
    """How many task ids fall in each split, for the docs and the report."""
    out: dict[str, int] = {}
    for tid in task_ids:
        name = split_of(tid, scheme)
        out[name] = out.get(name, 0) + 1
    return out


def task_order(task_id: str) -> tuple[str, int]:
    """Sort key of task ids in dataset order: ``HumanEval/2`` before ``HumanEval/10``."""
    head, _, tail = task_id.rpartition("/")
    return (head, int(tail)) if tail.isdigit() else (task_id, -1)
