import json

import pytest

from flowmend.bench._store import RunStore
from flowmend.bench.methods import load_methods
from flowmend.bench.report import load_run
from flowmend.cli import main
from flowmend.errors import UserError


def _identity(budget_tokens):
    methods = load_methods("b0,b3,flowmend")
    return {"suite": "humaneval", "split": "test", "split_scheme": "hash", "limit": None,
            "seed": 3, "backend": "replay", "model": "smollm2", "optimizer_model": "smollm2",
            "seed_workflow": "examples/workflows/single_shot.py",
            "budget": {"calls": 40, "tokens": budget_tokens, "cost": None, "wall_s": 600.0},
            "methods": [m.to_json() for m in methods]}


def _write_run(path, budget_tokens, *, tasks=24):
    with RunStore(path, _identity(budget_tokens)) as store:
        for i in range(tasks):
            task = f"HumanEval/{i}"
            store.append({"task_id": task, "method": "b0", "passed": i % 3 == 0, "tokens": 300,
                          "calls": 1, "iterations": 0, "cost": 300.0, "status": "solved",
                          "candidates": [{"iteration": 0, "index": 0, "score": 0.5,
                                          "hidden": float(i % 3 == 0), "selected": True}]})
            store.append({"task_id": task, "method": "b3", "passed": i % 2 == 0, "tokens": 1200,
                          "calls": 4, "iterations": 0, "cost": 1200.0, "status": "solved",
                          "candidates": []})
            cands = [{"iteration": 0, "index": 0, "score": 0.2, "hidden": 0.0, "selected": True}]
            for k in (1, 2):
                cands += [{"iteration": k, "index": j, "parent": 0, "score": 0.1 * j + k / 10,
                           "hidden": float((i + j + k) % 4 == 0) * 0.5, "patch_size": 2 * j,
                           "selected": j == 2} for j in (1, 2)]
            store.append({"task_id": task, "method": "flowmend", "passed": i % 4 != 1,
                          "tokens": min(budget_tokens, 2500), "calls": 7, "iterations": 2,
                          "cost": 2500.0, "status": "solved",
                          "proposals": {"tried": 8, "applied": 5}, "candidates": cands})
        store.update_run_json(performance={"wall_s": 12.5, "completion_tokens": 4000,
                                           "engine_busy_s": 8.0, "tokens_per_busy_s": 500.0,
                                           "tokens_per_wall_s": 320.0,
                                           "outside_model_share": 0.36,
                                           "raw_tokens_per_s": 400.0, "bench_over_raw": 0.8})


def test_report_writes_table_plots_and_sample_sizes(tmp_path, capsys):
    _write_run(tmp_path / "a", 30_000)
    _write_run(tmp_path / "b", 2_000, tasks=12)
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--resamples", "500"]) == 0
    text = (tmp_path / "a" / "REPORT.md").read_text()
    assert "| b0 (baseline) | 33.3% [" in text and "(n=24)" in text
    assert "best baseline" in text  # b3 has the higher pass@1
    assert "tokens 2000" in text and "tokens 30000" in text
    assert "generation throughput per engine-busy second: 500.0 tokens/s" in text
    assert "share of wall time outside the model: 36.0%" in text
    assert "raw vLLM on the same requests, all at once (--raw-baseline): 400.0 tokens/s" in text
    assert "bench throughput per wall second over raw vLLM's: 80.0%" in text
    for png in ("cost_accuracy.png", "gamma_kappa.png", "gamma_kappa_1.png"):
        assert (tmp_path / "a" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "flowmend" in out and "b0*" in out and "wrote" in out


def test_report_of_a_folder_without_results_is_a_one_line_error(tmp_path, capsys):
    with RunStore(tmp_path / "empty", _identity(1000)):
        pass
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no results yet" in " ".join(capsys.readouterr().err.split())
    with pytest.raises(UserError, match="not a run folder"):
        load_run(tmp_path / "nothing")
