"""`flowmend repair` on a replayed session: --no-reuse sends every greedy call again."""

import json
from pathlib import Path

from flowmend.cli import main
from tests.llm.recordings import one_answer_per_request

ROOT = Path(__file__).parents[2]
RECORDING = ROOT / "tests" / "engine" / "data" / "replay_he0.jsonl"


def repair_json(tmp_path, capsys, *extra):
    tmp_path.mkdir(parents=True)
    replay = one_answer_per_request(RECORDING, tmp_path / "replay.jsonl")
    code = main(["repair", str(ROOT / "examples" / "workflows" / "plan_then_code.py"),
                 "--task", "humaneval/HumanEval/0", "--backend", "replay", "--replay", str(replay),
                 "--iterations", "2", "--proposals", "3", "--max-tokens", "200",
                 "--budget-calls", "40", "--budget-tokens", "30000", "--out", str(tmp_path / "out"),
                 "--json", *extra])
    assert code == 0
    return json.loads(capsys.readouterr().out)


def test_no_reuse_sends_what_reuse_answered_from_earlier_answers(tmp_path, capsys):
    reused = repair_json(tmp_path / "reuse", capsys)
    sent = repair_json(tmp_path / "sent", capsys, "--no-reuse")
    assert reused["reused_calls"] > 0 and sent["reused_calls"] == 0
    assert reused["calls"] + reused["reused_calls"] == sent["calls"]
    assert reused["tokens"] < sent["tokens"]
    for key in ("status", "iterations", "proposals", "diff", "output"):
        assert reused[key] == sent[key], key  # the same choices, for less
