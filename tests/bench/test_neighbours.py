"""A task's result does not depend on what runs beside it: the same replayed run at concurrency 4
and 64 records the same thing for every (task, method), wall times aside."""

from __future__ import annotations

from pathlib import Path

from flowmend.bench._store import read_results
from flowmend.cli import main
from tests.llm.recordings import one_answer_per_request

# SmolLM2's answers in one run of b0, b1 and b2 on four tasks (tests/chaos/data/README.md).
RECORDING = Path(__file__).parents[1] / "chaos" / "data" / "humaneval_test4_smollm2.replay.jsonl"
# What a record measures rather than decides.
TIMINGS = ("wall_s", "hidden_check_s")


def records_at(concurrency: int, replay: Path, out: Path) -> dict[str, dict]:
    # No --budget-wall-s: the bench charges calls and tokens, which neighbours cannot touch.
    assert main(["bench", "--suite", "humaneval", "--split", "test", "--limit", "4",
                 "--budget-calls", "8", "--budget-tokens", "4000", "--methods", "b0,b1,b2",
                 "--backend", "replay", "--replay", str(replay), "--model", "smollm2",
                 "--out", str(out), "--no-progress", "--concurrency", str(concurrency)]) == 0
    return {f"{r['task_id']}|{r['method']}": {k: v for k, v in r.items() if k not in TIMINGS}
            for r in read_results(out)}


def test_concurrency_4_and_64_record_the_same_results(tmp_path):
    replay = one_answer_per_request(RECORDING, tmp_path / "replay.jsonl")
    narrow = records_at(4, replay, tmp_path / "c4")
    wide = records_at(64, replay, tmp_path / "c64")
    assert len(narrow) == 12 and narrow.keys() == wide.keys()
    for key in narrow:
        assert narrow[key] == wide[key], key
    assert all(r["budget"]["wall_s"] is None for r in narrow.values())
    # The budget binds somewhere (else the test would not show that booking is deterministic).
    assert any(r["stopped_by"] in ("calls", "tokens") for r in narrow.values())
