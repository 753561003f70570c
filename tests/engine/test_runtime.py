"""The budget: `Budget`'s caps and the `Meter` that spends them from many threads at once."""

import threading

import pytest

from flowmend.engine._runtime import Budget, BudgetExhausted, CallRecord, Meter, RunRecord
from flowmend.llm import Completion


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("field", ["calls", "tokens", "cost", "wall_s"])
@pytest.mark.parametrize("value", [0, -1, True])
def test_budget_caps_are_positive_or_none(field, value):
    with pytest.raises(ValueError, match=f"budget {field} must be positive or None"):
        Budget(**{field: value})
    assert getattr(Budget(**{field: None}), field) is None


def test_budget_round_trips_and_refuses_unknown_fields():
    budget = Budget(calls=3, tokens=None, cost=1.5, wall_s=9.0)
    assert Budget.from_json(budget.to_json()) == budget
    with pytest.raises(ValueError, match="unknown budget field.*callz"):
        Budget.from_json({"callz": 1})


def test_meter_counts_a_call_when_booked_and_tokens_when_settled():
    meter = Meter(Budget(calls=2, tokens=None, wall_s=None))
    allowed, booking = meter.reserve(10, 50, 1, (0.0, 0.0))
    assert allowed == 50 and meter.calls == 1 and meter.tokens == 0
    meter.settle(booking, Completion(("x",), 10, 7, 0.0, "m", 17.0))
    assert (meter.tokens, meter.cost) == (17, 17.0)
    meter.settle(meter.reserve(10, 50, 1, (0.0, 0.0))[1], None)  # a failed call: no tokens
    assert meter.calls == 2 and meter.tokens == 17
    assert meter.exhausted() == "calls"
    with pytest.raises(BudgetExhausted) as err:
        meter.reserve(1, 1, 1, (0.0, 0.0))
    assert err.value.limit == "calls" and meter.stopped_by == "calls"


def test_meter_books_n_samples_and_the_cost_cap():
    meter = Meter(Budget(calls=None, tokens=None, cost=100.0, wall_s=None))
    # 20 prompt tokens at 1.0, then per sample 0.5 a token: (100 - 20) / (0.5 * 4) = 40 each.
    allowed, booking = meter.reserve(20, 512, 4, (1.0, 0.5))
    assert allowed == 40 and booking == (20 + 40 * 4, 20 + 0.5 * 40 * 4)
    with pytest.raises(BudgetExhausted) as err:  # everything is held by the booking
        meter.reserve(1, 1, 1, (1.0, 0.5))
    assert err.value.limit == "cost"
    meter.settle(booking, Completion(("a",) * 4, 20, 8, 0.0, "m", 24.0))
    assert meter.cost == 24.0 and meter.exhausted() is None


def test_meter_stops_at_the_wall_time_cap():
    clock = Clock()
    meter = Meter(Budget(calls=None, tokens=None, wall_s=10.0), clock=clock)
    assert meter.wall_left() == 10.0 and meter.exhausted() is None
    clock.now += 10.0
    assert meter.wall_left() == 0.0 and meter.exhausted() == "wall_time"
    with pytest.raises(BudgetExhausted, match="wall_time"):
        meter.reserve(1, 1, 1, (0.0, 0.0))
    assert Meter(Budget(wall_s=None)).wall_left() is None


def test_run_record_cost_is_summed_from_its_calls():
    calls = (CallRecord("plan", "a", 10, 5, 0.1, "m", 15.0),
             CallRecord("code", "b", 0, 0, 0.0, "m", 0.0, "ReplayMiss"))
    run = RunRecord("ok", "x", calls, 0, 2.5, "ok")
    cost = run.to_cost()
    assert (cost.calls, cost.prompt_tokens, cost.completion_tokens, cost.units, cost.wall_s) \
        == (2, 10, 5, 15.0, 2.5)
    assert cost.tokens == run.tokens == 15


def test_meter_never_lets_concurrent_calls_pass_the_token_cap():
    meter = Meter(Budget(calls=None, tokens=1000, wall_s=None))
    granted, refused = [], []
    lock = threading.Lock()

    def worker():
        for _ in range(20):
            try:
                allowed, booking = meter.reserve(30, 64, 1, (1.0, 1.0))
            except BudgetExhausted as err:
                with lock:
                    refused.append(err.limit)
                return
            completion = Completion(("x",), 30, allowed, 0.0, "m", float(30 + allowed))
            meter.settle(booking, completion)
            with lock:
                granted.append(allowed)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert meter.tokens <= 1000 and meter.tokens == sum(30 + g for g in granted)
    assert refused and set(refused) == {"tokens"} and meter.stopped_by == "tokens"


def test_meter_caps_max_tokens_to_what_is_left():
    meter = Meter(Budget(calls=None, tokens=100, wall_s=None))
    allowed, booking = meter.reserve(60, 512, 1, (1.0, 1.0))
    assert allowed == 40
    meter.settle(booking, Completion(("x",), 60, 40, 0.0, "m", 100.0))
    with pytest.raises(BudgetExhausted):
        meter.reserve(1, 1, 1, (1.0, 1.0))
