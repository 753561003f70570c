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
    booking = meter.reserve(10, 50, 1, (0.0, 0.0))
    assert booking.max_tokens == 50 and meter.calls == 1 and meter.tokens == 0
    meter.settle(booking, Completion(("x",), 10, 7, 0.0, "m", 17.0))
    assert (meter.tokens, meter.cost) == (17, 17.0)
    meter.settle(meter.reserve(10, 50, 1, (0.0, 0.0)), None)  # a failed call: no tokens
    assert meter.calls == 2 and meter.tokens == 17
    assert meter.exhausted() == "calls"
    with pytest.raises(BudgetExhausted) as err:
        meter.reserve(1, 1, 1, (0.0, 0.0))
    assert err.value.limit == "calls" and meter.stopped_by == "calls"


def test_meter_books_n_samples_as_n_calls_and_the_cost_cap():
    meter = Meter(Budget(calls=None, tokens=None, cost=100.0, wall_s=None))
    # 20 prompt tokens at 1.0, then per sample 0.5 a token: (100 - 20) / (0.5 * 4) = 40 each.
    booking = meter.reserve(20, 512, 4, (1.0, 0.5))
    assert (booking.max_tokens, booking.n) == (40, 4) and meter.calls == 4
    assert (booking.tokens, booking.cost) == (20 + 40 * 4, 20 + 0.5 * 40 * 4)
    meter.settle(booking, Completion(("a",) * 4, 20, 8, 0.0, "m", 24.0))
    assert meter.cost == 24.0 and meter.exhausted() is None


def test_a_calls_cap_cuts_the_samples_of_a_request_to_the_calls_left():
    meter = Meter(Budget(calls=3, tokens=None, wall_s=None))
    meter.settle(meter.reserve(5, 10, 1, (1.0, 1.0)), None)
    booking = meter.reserve(5, 10, 4, (1.0, 1.0))
    assert booking.n == 2 and meter.calls == 3 and meter.exhausted() == "calls"


def test_a_call_waits_for_held_bookings_instead_of_being_cut_by_them():
    """Tokens only held by a call in flight are not spent: a second call waits for it to
    settle, then gets the whole completion it asked for."""
    meter = Meter(Budget(calls=None, tokens=200, wall_s=None))
    first = meter.reserve(20, 100, 1, (1.0, 1.0))  # holds 120 of 200
    granted = []
    waiter = threading.Thread(target=lambda: granted.append(meter.reserve(20, 100, 1, (1.0, 1.0))))
    waiter.start()
    waiter.join(timeout=0.3)
    assert waiter.is_alive() and not granted  # 60 would fit now, but 100 were asked for
    meter.settle(first, Completion(("x",), 20, 10, 0.0, "m", 30.0))  # it used 30 of its 120
    waiter.join(timeout=5)
    assert granted[0].max_tokens == 100 and meter.calls == 2


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
                booking = meter.reserve(30, 64, 1, (1.0, 1.0))
            except BudgetExhausted as err:
                with lock:
                    refused.append(err.limit)
                return
            allowed = booking.max_tokens
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
    # Refused only once not even the prompt and one completion token fit.
    assert meter.tokens >= 1000 - 30


def test_meter_caps_max_tokens_to_what_is_left():
    meter = Meter(Budget(calls=None, tokens=100, wall_s=None))
    booking = meter.reserve(60, 512, 1, (1.0, 1.0))
    assert booking.max_tokens == 40
    meter.settle(booking, Completion(("x",), 60, 40, 0.0, "m", 100.0))
    with pytest.raises(BudgetExhausted):
        meter.reserve(1, 1, 1, (1.0, 1.0))


# -- in the sandbox: the budget against a real workflow run ------------------------------------

SEVERAL_CALLS = '''
def solve(task):
    answers = []
    while True:
        try:
            answers.append(llm(f"draft {len(answers)} " + "w " * 18, max_tokens=16))
        except BudgetExhausted as err:
            return f"{len(answers)} answers, stopped by {err.limit}: " + answers[-1]
'''


@pytest.fixture(scope="module")
def sandbox():
    from flowmend.sandbox import Sandbox

    with Sandbox(workers=2) as sb:
        yield sb


def _run(source, sandbox, budget, backend=None):
    from flowmend.engine import parse_workflow
    from flowmend.engine._runtime import RunContext, run_workflow
    from flowmend.llm import Broker
    from flowmend.task import Task
    from tests.llm.backends import EchoBackend

    task = Task(task_id="t", prompt="def f():\n    pass\n", entry_point="f", visible_tests=())
    meter = Meter(budget)
    with Broker(backend or EchoBackend()) as broker:
        ctx = RunContext(workflow=parse_workflow(source), task=task, program=broker,
                         sandbox=sandbox, meter=meter)
        return run_workflow(ctx, timeout_s=30), meter


def test_a_workflow_of_several_calls_spends_at_least_90_percent_of_a_tight_token_cap(sandbox):
    # Each call: 20 prompt tokens (counted exactly by the backend) + 16 completion tokens.
    # The byte bound (UTF-8 length + 128) would have booked 172 tokens for each prompt and
    # stopped this run after 4 calls, at 144 of 300 tokens.
    run, meter = _run(SEVERAL_CALLS, sandbox, Budget(calls=None, tokens=300, wall_s=None))
    assert run.status == "ok" and run.budget_stop == "tokens"
    assert meter.tokens >= 0.9 * 300 and meter.tokens <= 300
    assert run.output.startswith("8 answers, stopped by tokens: ")
    assert [c.samples for c in run.calls] == [1] * 8 + [0]  # the refused call is no call
    assert run.llm_calls == meter.calls == 8 and run.tokens == meter.tokens


def test_the_last_call_is_cut_to_what_the_budget_still_pays_not_refused(sandbox):
    # 300 - 8 * 36 = 12 tokens are left: not enough for a 20-token prompt. At 310, 22 are
    # left: the ninth call runs with max_tokens 2 instead of being refused.
    run, meter = _run(SEVERAL_CALLS, sandbox, Budget(calls=None, tokens=310, wall_s=None))
    assert run.output.startswith("9 answers") and run.calls[8].completion_tokens == 2
    assert meter.tokens == 310


def test_an_uncaught_budget_stop_ends_the_run_without_output(sandbox):
    source = "def solve(task):\n    return llm('a b c') + llm('d e f')\n"
    run, meter = _run(source, sandbox, Budget(calls=1, tokens=None, wall_s=None))
    assert run.status == "budget_exhausted" and run.output is None
    assert run.budget_stop == "calls" and run.error_type == "BudgetExhausted"
