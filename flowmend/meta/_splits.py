"""The meta loop's four disjoint splits, by hash of the task id: it searches on one, measures
the winner's curse on another, selects on a third and reports on the fourth.

The bench's hash scheme (`flowmend.bench.splits`) names ``train``, ``val`` and ``test``; the
meta loop cuts ``train`` again with a second, salted hash into ``train-search`` (two thirds:
the minibatches trials are scored on) and ``train-confirm`` (one third: the top trials are
re-evaluated there in full). So a task's meta split never depends on which other tasks exist,
and ``val`` and ``test`` are exactly the bench's.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from flowmend.bench.splits import split_of
from flowmend.errors import UserError

META_SPLITS = ("train-search", "train-confirm", "val", "test")
_CONFIRM_SALT = b"flowmend.meta/confirm:"

T = TypeVar("T")


def meta_split(task_id: str) -> str:
    """``train-search``, ``train-confirm``, ``val``, ``test`` (or ``prompt``, in no split)."""
    split = split_of(task_id, "hash")
    if split != "train":
        return split
    return "train-confirm" if _confirms(task_id) else "train-search"


def _confirms(task_id: str) -> bool:
    digest = hashlib.sha256(_CONFIRM_SALT + task_id.encode("utf-8")).digest()
    return int.from_bytes(digest, "big") % 3 == 0


def cut_train(items: Iterable[T], *, task_id: Callable[[T], str]) -> tuple[list[T], list[T]]:
    """A train set cut by the salted hash into (search, confirm), in their original order."""
    items = list(items)
    return ([i for i in items if not _confirms(task_id(i))],
            [i for i in items if _confirms(task_id(i))])


def split_digest(items: Iterable[T], *, task_id: Callable[[T], str]) -> str:
    """A short hash of a split's task ids (order ignored): what a set-up was learned on."""
    ids = sorted(task_id(i) for i in items)
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16]


def select(items: Iterable[T], split: str, *, task_id: Callable[[T], str]) -> list[T]:
    """The items of one meta split, in their original order."""
    if split not in META_SPLITS:
        raise UserError(f"unknown meta split {split!r}; choose one of {', '.join(META_SPLITS)}")
    return [item for item in items if meta_split(task_id(item)) == split]


def search_order(items: Sequence[T], seed: int) -> list[T]:
    """The order every trial evaluates ``train-search`` in: shuffled once by the study's seed,
    the same for every trial, so trials are compared task by task (paired) and a pruned
    trial's first tasks are the ones the others also saw first."""
    order = list(items)
    random.Random(f"flowmend.meta/search:{seed}").shuffle(order)
    return order
