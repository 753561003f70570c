"""`flowmend perf`: the benchmark scripts' command line (their measurements are tested beside them)."""

from __future__ import annotations

import json

from flowmend.cli import main


def test_perf_engine_prints_json_for_a_named_workflow(capsys, tmp_path):
    path = tmp_path / "w.py"
    path.write_text("def solve(task):\n    code = llm(task.prompt)\n    return code\n")
    assert main(["perf", "engine", "--repeat", "1", "--json", "--workflow", str(path)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["workflow"] == "w.py" and row["steps"] == 1


def test_a_missing_workflow_or_a_bad_count_is_a_one_line_error(capsys, tmp_path):
    assert main(["perf", "engine", "--workflow", str(tmp_path / "none.py")]) == 2
    assert "no such workflow file" in capsys.readouterr().err
    for argv in (["perf", "engine", "--repeat", "0"], ["perf", "loop", "--tasks", "0"],
                 ["perf", "sandbox", "--runs", "0"], ["perf", "llm", "--repeat", "0"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err
