"""The engine benchmark runs end to end (one sample): a smoke test, not a timing assertion."""

from __future__ import annotations

import json

from flowmend.bench import perf_engine


def test_measure_reports_every_figure_for_a_seed():
    row = perf_engine.measure(perf_engine.EXAMPLES_DIR / "plan_then_code.py", ("llm",), repeat=1)
    assert row["steps"] == 2 and row["menu_items"] > 0
    for key in ("bare_parse_codegen_s", "parse_workflow_s", "menu_s", "apply_s",
                "apply_checks_s", "apply_over_bare", "apply_and_model_s"):
        assert row[key] > 0, key
    assert row["apply_by_operator_s"]


def test_main_prints_json_for_a_named_workflow(capsys, tmp_path):
    path = tmp_path / "w.py"
    path.write_text("def solve(task):\n    code = llm(task.prompt)\n    return code\n")
    assert perf_engine.main(["--repeat", "1", "--json", "--workflow", str(path)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["workflow"] == "w.py" and row["steps"] == 1


def test_missing_workflow_is_a_one_line_error(capsys, tmp_path):
    assert perf_engine.main(["--workflow", str(tmp_path / "none.py")]) == 2
    assert "no such workflow file" in capsys.readouterr().err
