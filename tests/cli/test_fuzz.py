"""`flowmend fuzz`: the table, the JSON report, exit codes and the falsifying example."""

import json

import pytest

from flowmend.cli import main


def test_fuzz_json_report(capsys):
    code = main(["fuzz", "--examples", "3", "--seed", "1", "--operator", "swap-model",
                 "--operator", "remove-step", "--parser-examples", "0", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["violated"] is False
    rows = {r["operator"]: r for r in report["operators"]}
    assert set(rows) == {"swap-model", "remove-step"}
    for row in rows.values():
        assert row["tried"] >= 3
        assert row["applied"] + row["not_applicable"] + row["invalid"] == row["tried"]


def test_fuzz_table(capsys):
    code = main(["fuzz", "--examples", "2", "--operator", "append-instruction", "--parser-examples", "2",
                 "--entry", "run", "--step-callee", "client.complete"])
    out = capsys.readouterr().out
    assert code == 0
    assert "append-instruction" in out and "violations" in out and "hypothesmith" in out


def test_fuzz_in_another_step_convention(capsys):
    code = main(["fuzz", "--examples", "3", "--convention", "agent", "--operator",
                 "insert-verify-step", "--parser-examples", "0", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["convention"] == "agent" and report["violated"] is False
    assert report["operators"][0]["tried"] >= 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--examples", "0"], "--examples must be at least 1"),
        (["--convention", "nope"], "unknown convention 'nope'"),
        (["--operator", "nope"], "unknown operator(s) nope"),
        (["--entry", "not a name"], "--entry must be a function name"),
        (["--step-callee", "llm*"], "must be a plain dotted name"),
    ],
)
def test_fuzz_bad_arguments_are_one_line_errors(argv, message, capsys):
    assert main(["fuzz", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.fixture
def lying_operator(tmp_path):
    """An operator whose declared edit region is wrong, in a file of its own: the fuzzer and
    `ops test` must catch it."""
    path = tmp_path / "lying.py"
    path.write_text(
        "from flowmend.operators import SwapModel\n\n\n"
        "class LyingSwap(SwapModel):\n"
        "    name = 'lying-swap'\n\n"
        "    def edit_region(self, wf, target, args):\n"
        "        return [(1, 1)]\n"
    )
    return path


def test_fuzz_exits_1_and_prints_the_falsifying_example(lying_operator, capsys):
    code = main(["fuzz", "--examples", "20", "--library", "builtin", "--library",
                 str(lying_operator), "--operator", "lying-swap", "--parser-examples", "0",
                 "--no-shrink"])
    out = capsys.readouterr().out
    assert code == 1
    assert "falsifying example: lying-swap" in out
    assert "text after the edit region changed" in out
    assert "--- workflow" in out and "--- result" in out


def test_ops_test_gates_a_library(lying_operator, capsys):
    assert main(["ops", "test", "builtin", "--fuzz-examples", "0"]) == 0
    assert "passed" in capsys.readouterr().out
    assert main(["ops", "test", str(lying_operator), "--fuzz-examples", "20"]) == 1
    out = capsys.readouterr().out
    assert "lying-swap" in out and "fuzz" in out
    assert main(["ops", "--library", "builtin", "--library", str(lying_operator), "--json"]) == 0
    names = [o["name"] for o in json.loads(capsys.readouterr().out)]
    assert "lying-swap" in names and "swap-model" in names


def test_ops_with_a_library_that_does_not_load_is_one_line(tmp_path, capsys):
    assert main(["ops", "--library", str(tmp_path / "missing.py")]) == 2
    err = capsys.readouterr().err
    assert "missing.py" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
