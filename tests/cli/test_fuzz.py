"""`flowmend fuzz`: the table, the JSON report, exit codes and the falsifying example."""

import json

import pytest

from flowmend.cli import main
from flowmend.engine import _operator as registry
from flowmend.operators.swap_model import SwapModel


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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--examples", "0"], "--examples must be at least 1"),
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
def lying_operator():
    """An operator whose declared edit region is wrong: the fuzzer must catch it."""

    class LyingSwap(SwapModel):
        name = "lying-swap"

        def edit_region(self, wf, target, args):
            return [(1, 1)]

    registry._REGISTRY[LyingSwap.name] = LyingSwap
    yield LyingSwap
    registry._REGISTRY.pop(LyingSwap.name)


def test_fuzz_exits_1_and_prints_the_falsifying_example(lying_operator, capsys):
    code = main(["fuzz", "--examples", "20", "--operator", "lying-swap", "--parser-examples", "0",
                 "--no-shrink"])
    out = capsys.readouterr().out
    assert code == 1
    assert "falsifying example: lying-swap" in out
    assert "text after the edit region changed" in out
    assert "--- workflow" in out and "--- result" in out
