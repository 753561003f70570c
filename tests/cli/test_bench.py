"""`flowmend bench` refuses bad arguments with one line, before writing anything."""

import pytest

from flowmend.cli import main


@pytest.mark.parametrize("extra, message", [
    (["--seed-workflow", "no/such/workflow.py"], "cannot read the seed workflow"),
    (["--seed-workflow", "examples/workflows/class_based.py"], "pre-patches do not apply"),
    (["--split-scheme", "conventional"], "MBPP's split"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--methods", "b0,b0"], "two methods are named 'b0'"),
    (["--methods", "nope"], "unknown method 'nope'"),
    (["--backend", "openai"], "needs --base-url"),
    (["--backend", "replay"], "needs --replay FILE"),
    (["--backend", "replay", "--replay", "missing.jsonl"], "no such file"),
    (["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--raw-baseline"],
     "--raw-baseline measures the in-process vLLM engine"),
])
def test_bad_arguments_are_one_line_errors_and_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    args = ["bench", "--suite", "humaneval", "--out", str(out), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert "Traceback" not in err
    assert not out.exists()

