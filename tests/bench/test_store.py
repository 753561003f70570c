import json
import os

import pytest

from flowmend.bench._store import RESULTS, RunStore, read_results
from flowmend.errors import UserError

IDENTITY = {"suite": "humaneval", "split": "test", "methods": ["b0"], "seed": 0}


def test_append_and_reopen(tmp_path):
    with RunStore(tmp_path / "run", IDENTITY) as store:
        store.append({"task_id": "HumanEval/1", "method": "b0", "passed": True})
        store.append({"task_id": "HumanEval/1", "method": "b1", "passed": False})
    with RunStore(tmp_path / "run", IDENTITY) as store:
        assert store.done() == {("HumanEval/1", "b0"), ("HumanEval/1", "b1")}


def test_a_torn_last_line_is_dropped_and_cut(tmp_path):
    run = tmp_path / "run"
    with RunStore(run, IDENTITY) as store:
        store.append({"task_id": "A/1", "method": "b0"})
    with open(run / RESULTS, "ab") as fh:
        fh.write(b'{"task_id": "A/2", "meth')
    assert [r["task_id"] for r in read_results(run)] == ["A/1"]
    with RunStore(run, IDENTITY) as store:
        assert store.done() == {("A/1", "b0")}
        store.append({"task_id": "A/2", "method": "b0"})
    lines = (run / RESULTS).read_text().splitlines()
    assert [json.loads(line)["task_id"] for line in lines] == ["A/1", "A/2"]


def test_a_garbled_complete_last_line_is_a_tear_but_damage_inside_is_an_error(tmp_path):
    run = tmp_path / "run"
    with RunStore(run, IDENTITY) as store:
        store.append({"task_id": "A/1", "method": "b0"})
    with open(run / RESULTS, "ab") as fh:
        fh.write(b"\x00\x00\x00\n")
    assert len(read_results(run)) == 1
    with open(run / RESULTS, "ab") as fh:
        fh.write(b'{"task_id": "A/3", "method": "b0"}\n')
    with pytest.raises(UserError, match="line 2 is not a JSON record"):
        read_results(run)


def test_resume_with_other_arguments_is_refused_without_writing(tmp_path):
    run = tmp_path / "run"
    with RunStore(run, IDENTITY) as store:
        store.append({"task_id": "A/1", "method": "b0"})
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(UserError, match=r"other arguments \(seed: was 0, now 1\)"):
        RunStore(run, {**IDENTITY, "seed": 1}).open()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_second_writer_is_refused(tmp_path):
    with RunStore(tmp_path / "run", IDENTITY):
        with pytest.raises(UserError, match="another `flowmend bench`"):
            RunStore(tmp_path / "run", IDENTITY).open()


def test_a_file_is_not_a_run_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        RunStore(tmp_path / "f", IDENTITY).open()
    os.mkdir(tmp_path / "d")
    (tmp_path / "d" / RESULTS).write_text("")
    with pytest.raises(UserError, match="without run.json"):
        RunStore(tmp_path / "d", IDENTITY).open()


def test_check_refuses_what_open_would_and_writes_nothing(tmp_path):
    RunStore(tmp_path / "new", IDENTITY).check()
    assert not (tmp_path / "new").exists()
    with RunStore(tmp_path / "run", IDENTITY) as store:
        store.append({"task_id": "A/1", "method": "b0"})
        with pytest.raises(UserError, match="another `flowmend bench`"):
            RunStore(tmp_path / "run", IDENTITY).check()
    with pytest.raises(UserError, match="other arguments"):
        RunStore(tmp_path / "run", {**IDENTITY, "split": "val"}).check()
    RunStore(tmp_path / "run", IDENTITY).check()
