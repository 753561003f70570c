"""The inner loop end to end on the real embedded model through vLLM (one repair, one task)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowmend.engine import Budget, RepairConfig, repair
from flowmend.llm import Broker
from flowmend.sandbox import Sandbox
from flowmend.task import Task

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parents[2] / "examples" / "workflows"


@pytest.mark.model
def test_one_repair_on_the_embedded_model(model_backend, tmp_path):
    from flowmend.bench.datasets import by_id

    task: Task = by_id("humaneval")["HumanEval/0"].task
    config = RepairConfig(iterations=1, proposals=2, budget=Budget(calls=12, tokens=6000, wall_s=600),
                          program_params={"max_tokens": 160})
    with Broker(model_backend) as broker, Sandbox(workers=2) as sandbox:
        result = repair((EXAMPLES / "plan_then_code.py").read_text(), task, program=broker,
                        optimizer=broker, sandbox=sandbox, config=config,
                        trace_path=tmp_path / "trace.jsonl")
    assert result.status in ("solved", "iterations_exhausted", "budget_exhausted")
    assert result.tokens <= 6000 and result.calls <= 12
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    program_calls = [e for e in trace if e["event"] == "llm" and e.get("role") == "program"]
    assert program_calls and {e["step"] for e in program_calls} <= {"plan", "code", None}
    assert program_calls[0]["step"] == "plan" and program_calls[0]["model"] == "smollm2"
    assert trace[-1]["event"] == "stop" and trace[-1]["tokens"] == result.tokens
    if not result.passed_visible:
        # The optimizer was asked, and its constrained answers were menu numbers.
        choices = [e for e in trace if e["event"] == "llm" and e.get("purpose") == "choice"]
        assert choices and all(a.isdigit() for e in choices for a in e.get("answers", []))


@pytest.mark.model
def test_calls_on_the_real_engine_spend_at_least_90_percent_of_a_tight_token_cap(model_backend):
    """Booked with the engine's exact prompt counts and max_tokens cut to what is left, calls
    go on until not even a prompt and one token fit."""
    from flowmend.engine import BudgetExhausted
    from flowmend.engine._runtime import Meter, metered_call
    from flowmend.llm import Request

    meter = Meter(Budget(calls=None, tokens=400, wall_s=None))
    answered = 0
    with Broker(model_backend) as broker:
        while True:
            request = Request(prompt=f"Write a Python one-liner number {answered}.", max_tokens=24)
            try:
                metered_call(broker, meter, request)
            except BudgetExhausted as err:
                assert err.limit == "tokens"
                break
            answered += 1
    assert answered >= 3 and 0.9 * 400 <= meter.tokens <= 400
