"""The job runner with the real sandbox and a repair-shaped solver (the loop is tested elsewhere)."""

import json
from dataclasses import dataclass

import pytest

from flowmend.bench._runner import hidden_utility_with, run_jobs, write_samples
from flowmend.bench._store import RunStore
from flowmend.bench.methods import Method
from flowmend.engine import RepairConfig
from flowmend.task import Task

SEED = 'def solve(task):\n    return llm("Write " + task.prompt)\n'
GOOD = "def add(a, b):\n    return a + b\n"
HALF = "def add(a, b):\n    return a + b if a else 0\n"
BAD = "def add(a, b):\n    return a - b\n"


@dataclass(frozen=True)
class Problem:
    task: Task
    hidden_tests: tuple[str, ...]


def _problems(n):
    hidden = ("assert add(1, 2) == 3", "assert add(0, 5) == 5", "assert add(-1, 1) == 0")
    return [Problem(Task(f"Toy/{i}", "add two numbers", "add", ("assert add(1, 2) == 3",)), hidden)
            for i in range(n)]


def _result(candidates, output):
    return {"status": "solved", "passed_visible": True, "iterations": 1, "calls": 3,
            "tokens": 120, "cost": 120.0, "stopped_by": "visible_checks",
            "budget": {"calls": 40, "tokens": 30000, "cost": None, "wall_s": 600.0},
            "proposals": {"tried": 2, "applied": 1, "invalid": 1, "rejected": 0},
            "output": output, "diff": "", "candidates": candidates}


def solver(problem, method):
    """A stand-in for `repair` with the loop's result shape: b0 runs once, loop iterates once."""
    number = int(problem.task.task_id.split("/")[1])
    if method.name == "b0":
        out = GOOD if number == 0 else BAD
        return _result([{"iteration": 0, "index": 0, "output": out, "score": 0.5,
                         "selected": True, "source": SEED}], out)
    if number == 2:
        raise RuntimeError("the loop broke")
    prompt_edit = SEED.replace("Write ", "Carefully write ")
    return _result([
        {"iteration": 0, "index": 0, "output": BAD, "score": 0.0, "selected": True, "source": SEED},
        {"iteration": 1, "index": 1, "parent": [0, 0], "output": HALF, "score": 0.4, "source": prompt_edit},
        {"iteration": 1, "index": 2, "parent": [0, 0], "output": GOOD, "score": 1.0, "selected": True,
         "source": prompt_edit, "patch": {"operator": "rewrite-prompt"}},
    ], GOOD)


METHODS = [Method("b0", baseline=True), Method("loop", config=RepairConfig(iterations=1))]


@pytest.fixture(scope="module")
def sandbox():
    from flowmend.sandbox import Sandbox

    with Sandbox(workers=2) as sb:
        yield sb


def test_records_carry_hidden_utility_patch_size_and_errors(tmp_path, sandbox):
    hidden = hidden_utility_with(sandbox, hidden_tests=lambda p: p.hidden_tests)
    with RunStore(tmp_path / "run", {"t": 1}) as store:
        stats = run_jobs(store, _problems(3), METHODS, solve=solver, hidden=hidden,
                         task_id=lambda p: p.task.task_id, concurrency=3)
        records = {(r["task_id"], r["method"]): r for r in store.records}
    assert stats.done == 6 and stats.errors == 1
    assert records[("Toy/0", "b0")]["passed"] is True
    assert records[("Toy/1", "b0")]["passed"] is False and records[("Toy/1", "b0")]["hidden"] == 0
    loop = records[("Toy/1", "loop")]
    assert loop["passed"] is True
    assert [c["hidden"] for c in loop["candidates"]] == [0.0, pytest.approx(2 / 3), 1.0]
    assert [c["patch_size"] for c in loop["candidates"]] == [None, 2, 2]
    broken = records[("Toy/2", "loop")]
    assert broken["status"] == "error" and "the loop broke" in broken["error"]
    assert broken["passed"] is False
    write_samples(tmp_path / "run", list(records.values()), ["b0", "loop"])
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples_loop.jsonl").open()]
    assert [s["task_id"] for s in samples] == ["Toy/0", "Toy/1", "Toy/2"]
    assert samples[0]["completion"] == GOOD and samples[2]["completion"] == ""


def test_a_resumed_run_does_only_what_is_missing(tmp_path, sandbox):
    hidden = hidden_utility_with(sandbox, hidden_tests=lambda p: p.hidden_tests)
    calls = []

    def counting(problem, method):
        calls.append((problem.task.task_id, method.name))
        return solver(problem, method)

    problems = _problems(4)
    with RunStore(tmp_path / "run", {"t": 1}) as store:
        run_jobs(store, problems[:2], METHODS, solve=counting, hidden=hidden,
                 task_id=lambda p: p.task.task_id, concurrency=2)
    assert len(calls) == 4
    seen = []
    with RunStore(tmp_path / "run", {"t": 1}) as store:
        stats = run_jobs(store, problems, METHODS, solve=counting, hidden=hidden,
                         task_id=lambda p: p.task.task_id, concurrency=2,
                         on_progress=seen.append)
        keys = [(r["task_id"], r["method"]) for r in store.records]
    assert stats.skipped == 4 and stats.done == 4
    # A snapshot at the start (the resumed jobs) and one per finished job.
    assert [p.completed for p in seen] == [4, 5, 6, 7, 8] and {p.total for p in seen} == {8}
    assert seen[0].tokens == 0 and seen[-1].tokens == 3 * 120  # Toy/2 × loop raised: no tokens
    assert seen[-1].pass_at_1 == seen[-1].passed / 8
    with pytest.raises(AttributeError):
        seen[0].completed = 0  # frozen: a listener cannot change the run's figures
    assert len(calls) == 8 and len(set(calls)) == 8
    assert sorted(keys) == sorted({(p.task.task_id, m.name) for p in problems for m in METHODS})


def test_patch_sizes_are_measured_against_the_stored_parent_source():
    """Each candidate names its parent's (iteration, index); its size is against that source,
    from the loop's own record (the bench re-applies no patch)."""
    from flowmend.bench._runner import build_record
    from flowmend.bench.metrics import patch_size

    one = SEED.replace("Write ", "Carefully write ")
    two = one.replace("Carefully", "Very carefully")
    sibling = SEED.replace("task.prompt", "task.prompt.strip()")
    result = _result([
        {"iteration": 0, "index": 0, "parent": None, "output": BAD, "source": SEED, "selected": True},
        {"iteration": 1, "index": 1, "parent": [0, 0], "output": BAD, "source": one, "selected": True},
        {"iteration": 1, "index": 2, "parent": [0, 0], "output": BAD, "source": sibling},
        {"iteration": 2, "index": 1, "parent": [1, 1], "output": GOOD, "source": two},
        {"iteration": 2, "index": 2, "parent": [9, 9], "output": GOOD, "source": two},
    ], GOOD)
    record = build_record("Toy/0", Method("loop"), result, hidden=lambda p, code: (0.0, False),
                          problem=None, wall_s=0.0)
    sizes = [c["patch_size"] for c in record["candidates"]]
    assert sizes == [None, patch_size(SEED, one), patch_size(SEED, sibling), patch_size(one, two),
                     None]
    assert sizes[3] == 2 and record["candidates"][3]["parent"] == [1, 1]


def test_a_failing_model_stops_the_run_without_recording_the_job(tmp_path, sandbox):
    from flowmend.bench._runner import RunAborted

    hidden = hidden_utility_with(sandbox, hidden_tests=lambda p: p.hidden_tests)
    failed = [0]

    def flaky(problem, method):
        if problem.task.task_id == "Toy/1":
            failed[0] += 1  # what the broker's failed-batch counter does when the engine fails
        return solver(problem, method)

    with RunStore(tmp_path / "run", {"t": 1}) as store:
        with pytest.raises(RunAborted, match="engine call"):
            run_jobs(store, _problems(3), [Method("b0")], solve=flaky, hidden=hidden,
                     task_id=lambda p: p.task.task_id, concurrency=1,
                     failures=lambda: failed[0])
        # Toy/0 finished before the failure and is kept; Toy/1 is left for a resume. (Toy/2
        # may have started on the worker before the run noticed; its own job saw no failure.)
        recorded = [r["task_id"] for r in store.records]
        assert recorded[0] == "Toy/0" and "Toy/1" not in recorded

    def raising(problem, method):
        raise ConnectionError("server gone")

    with RunStore(tmp_path / "run2", {"t": 1}) as store:
        with pytest.raises(RunAborted, match="server gone"):
            run_jobs(store, _problems(2), [Method("b0")], solve=raising, hidden=hidden,
                     task_id=lambda p: p.task.task_id, fatal=(ConnectionError,))
        assert store.records == []


def test_hidden_utility_on_mbpp_counts_asserts(sandbox):
    from flowmend.bench import datasets

    problem = datasets.by_id("mbpp")["Mbpp/17"]  # square_perimeter: three asserts
    hidden = hidden_utility_with(sandbox, hidden_tests=lambda p: p.hidden_tests,
                                 program=lambda p, code: p.program(code))
    assert hidden(problem, problem.reference) == (1.0, True, 1.0)
    # Without visible tests to leave out, U is the share of all.
    assert hidden(problem, "def square_perimeter(a):\n    return 40\n") == (
        pytest.approx(1 / 3), False, pytest.approx(1 / 3))
    assert hidden(problem, "") == (0.0, False, 0.0)


def test_hidden_utility_on_mbpp_leaves_out_the_visible_assert(sandbox):
    from flowmend.bench import datasets

    problem = datasets.by_id("mbpp")["Mbpp/17"]  # the first of its three asserts is visible
    hidden = hidden_utility_with(sandbox, hidden_tests=lambda p: p.hidden_tests,
                                 visible_tests=lambda p: p.task.visible_tests,
                                 program=lambda p, code: p.program(code))
    assert hidden(problem, problem.reference) == (1.0, True, 1.0)
    # Passes the visible assert only: a third of all, none of the unseen two.
    only_visible = "def square_perimeter(a):\n    return 40\n"
    assert hidden(problem, only_visible) == (pytest.approx(1 / 3), False, 0.0)
    # Passes the two unseen asserts only.
    unseen = "def square_perimeter(a):\n    return 4 * a if a < 10 else 0\n"
    assert hidden(problem, unseen) == (pytest.approx(2 / 3), False, 1.0)
