"""Trace events: frozen data whose `to_json()` is the trace line a reader gets."""

import dataclasses
import json

import pytest

from flowmend.engine import (ErrorEvent, IterationEvent, LlmEvent, MenuEvent, ProposalEvent,
                             StartEvent, StopEvent, TraceEvent, VerdictEvent)
from flowmend.engine._trace import Trace


def test_a_line_names_its_kind_and_leaves_out_only_optional_nones():
    failed = LlmEvent(role="optimizer", iteration=2, purpose="choice", error="ReplayMiss")
    assert failed.to_json() == {"event": "llm", "role": "optimizer", "iteration": 2,
                                "purpose": "choice", "error": "ReplayMiss", "t": 0.0}
    # A program call outside any step still says so.
    call = LlmEvent(role="program", iteration=0, prompt_tokens=3, completion_tokens=4)
    assert call.to_json()["step"] is None and call.to_json()["error"] is None
    verdict = VerdictEvent(iteration=0, index=0, label=None, run_status="ok", error_type=None,
                           score=1.0, kind="ok", passed=2, total=2, summary="", tokens=9,
                           selected=True)
    assert verdict.to_json()["label"] is None and verdict.to_json()["event"] == "verdict"
    assert MenuEvent(iteration=1, size=0).to_json() == {"event": "menu", "iteration": 1,
                                                        "size": 0, "t": 0.0}
    assert MenuEvent(iteration=1, size=2, shown=("a", "b")).to_json()["shown"] == ["a", "b"]


def test_every_kind_is_frozen_and_distinct():
    kinds = [StartEvent, MenuEvent, ProposalEvent, LlmEvent, VerdictEvent, IterationEvent,
             StopEvent, ErrorEvent]
    assert [k.EVENT for k in kinds] == ["start", "menu", "proposal", "llm", "verdict",
                                        "iteration", "stop", "error"]
    event = ErrorEvent(message="no entry")
    assert isinstance(event, TraceEvent)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.message = "x"


def test_the_trace_stamps_time_writes_lines_and_hands_on_the_events(tmp_path):
    seen = []
    trace = Trace(tmp_path / "t.jsonl", seen.append)
    trace(IterationEvent(iteration=1, candidates=0))
    trace(StopEvent(status="error", stopped_by="error", iterations=0, calls=0, tokens=0,
                    passed_visible=False))
    trace.close()
    lines = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert lines == [e.to_json() for e in seen] and [e["event"] for e in lines] == ["iteration", "stop"]
    assert 0.0 <= seen[0].t <= seen[1].t
