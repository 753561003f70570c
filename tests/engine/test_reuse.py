"""Greedy answers reused within one repair: which requests an answer stands for, and a run that
asks the same greedy question twice pays once."""

from __future__ import annotations

import threading

import pytest

from flowmend.engine import Budget, parse_workflow
from flowmend.engine._reuse import AnswerCache
from flowmend.engine._runtime import Meter, RunContext, run_workflow
from flowmend.llm import Backend, Broker, Completion, Request
from flowmend.sandbox import Sandbox
from flowmend.task import Task


def answer(text: str, tokens: int, reason: str | None = "stop", n: int = 1) -> Completion:
    return Completion((text,) * n, 7, tokens * n, 0.1, "m", float(7 + tokens * n),
                      () if reason is None else (reason,) * n)


def cached(request: Request, completion: Completion) -> AnswerCache:
    cache = AnswerCache()
    view = cache.view()
    view.put(request, completion)
    cache.merge([view])
    return cache


ASK = Request(prompt="write add", max_tokens=100)


def test_an_answer_that_ended_by_itself_answers_any_max_tokens_it_fits():
    cache = cached(ASK, answer("def add", 40))
    view = cache.view()
    for max_tokens in (40, 100, 1000):
        assert view.get(Request(prompt="write add", max_tokens=max_tokens)).text == "def add"
    assert view.get(Request(prompt="write add", max_tokens=39)) is None  # would be cut shorter


def test_an_answer_cut_by_its_length_answers_that_max_tokens_only():
    # The budget cut the request to 60 tokens, and the answer used them all: asked for 100
    # again, the model would write on.
    cache = cached(ASK, answer("def ad", 60, "length"))
    view = cache.view()
    assert view.get(Request(prompt="write add", max_tokens=60)).text == "def ad"
    assert view.get(ASK) is None
    assert view.get(Request(prompt="write add", max_tokens=59)) is None


@pytest.mark.parametrize("other", [
    Request(prompt="write add!", max_tokens=100),
    Request(prompt="write add", max_tokens=100, temperature=0.7),
    Request(prompt="write add", max_tokens=100, stop=("```",)),
    Request(prompt="write add", max_tokens=100, n=2),
    Request(prompt="write add", max_tokens=100, model="other"),
    Request(messages=(("user", "write add"),), max_tokens=100),
])
def test_any_other_request_is_sent(other):
    assert cached(ASK, answer("def add", 40)).view().get(other) is None


def test_sampled_answers_and_answers_of_unknown_finish_are_not_kept():
    sampled = Request(prompt="write add", max_tokens=100, temperature=0.7)
    assert cached(sampled, answer("def add", 40)).view().get(sampled) is None
    assert cached(ASK, answer("def add", 40, None)).view().get(ASK) is None


def test_greedy_n_samples_are_reused_as_a_whole():
    ask = Request(prompt="write add", max_tokens=100, n=3)
    assert cached(ask, answer("x", 10, n=3)).view().get(ask).texts == ("x",) * 3
    assert cached(ask, answer("x", 100, "length", n=3)).view().get(ask).texts == ("x",) * 3


def test_siblings_do_not_see_each_other_until_merged_in_order():
    cache = AnswerCache()
    first, second = cache.view(), cache.view()
    first.put(ASK, answer("first", 10))
    second.put(ASK, answer("second", 10))
    assert second.get(ASK).text == "second" and cache.view().get(ASK) is None
    cache.merge([first, second])
    assert cache.view().get(ASK).text == "first"  # the lower index wins, whoever finished first


class Counting(Backend):
    """Answers every request with a code block and counts what it was sent."""

    name = "counting"
    model = "m"

    def __init__(self):
        self.sent: list[Request] = []
        self._lock = threading.Lock()

    def generate(self, requests):
        with self._lock:
            self.sent.extend(requests)
        return [Completion(("```python\ndef add(a, b):\n    return a + b\n```",) * r.n, 20,
                           12 * r.n, 0.01, "m", float(20 + 12 * r.n), ("stop",) * r.n)
                for r in requests]


TWICE = '''
def solve(task):
    first = llm("Write add.", temperature=0)
    again = llm("Write add.", temperature=0)
    sampled = llm("Write add.", temperature=0.8)
    resampled = llm("Write add.", temperature=0.8)
    return again
'''

ADD = Task(task_id="add", prompt="def add(a, b):\n", entry_point="add",
           visible_tests=("assert add(2, 3) == 5",))


def test_a_run_asking_the_same_greedy_question_twice_pays_once():
    backend = Counting()
    wf = parse_workflow(TWICE)
    meter = Meter(Budget(calls=10, tokens=None, wall_s=None))
    with Sandbox(workers=1) as sandbox, Broker(backend) as broker:
        ctx = RunContext(workflow=wf, task=ADD, program=broker, sandbox=sandbox, meter=meter,
                         answers=AnswerCache().view())
        run = run_workflow(ctx, timeout_s=20)
    assert run.status == "ok", (run.error_type, run.error_message)
    assert [c.reused for c in run.calls] == [False, True, False, False]
    assert len(backend.sent) == 3 and meter.calls == 3 and meter.tokens == 3 * 32
    assert run.tokens == meter.tokens and run.reused == 1
    # The verifier's cost is the program's, reused call included, so a score does not depend on
    # which answers the repair happened to have.
    assert run.to_cost().tokens == 4 * 32 and run.to_cost().calls == 4
