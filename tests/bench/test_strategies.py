"""The baselines made of several runs (best-of-n, self-repair) and the ablations' loop hooks
(random choice, selection by another ranking), on a scripted model: the model is not the
point here, the spending and the selection are."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import pytest

from flowmend import seeds
from flowmend.bench._strategies import solve_with
from flowmend.engine import Budget, LlmEvent, MenuEvent, RepairConfig, repair
from flowmend.llm import Broker, Completion
from flowmend.llm._types import Backend
from flowmend.sandbox import Sandbox
from flowmend.task import Task

ADD = Task.from_json(json.loads(
    (Path(__file__).parents[1] / "engine" / "data" / "add_task.json").read_text()))
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
# Right, and longer: it costs more tokens.
RIGHT_LONG = "```python\ndef add(a, b):\n    # add the two numbers given, and return them\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
WRONG_TOO = "```python\ndef add(a, b):\n    return a * b\n```"
SEED = seeds.load("single_shot")


class Scripted(Backend):
    """Answers by what a request is: the greedy code request, a sample, a repair prompt, or
    any other prompt (a patched workflow's). Each kind has its own queue of answers; the last
    answer repeats. Tokens are a quarter of the characters."""

    name = "scripted"
    model = "scripted"
    chat = False

    def __init__(self, *, greedy=(WRONG,), sample=(WRONG,), repair=(WRONG,), other=None):
        self.queues = {"greedy": list(greedy), "sample": list(sample), "repair": list(repair)}
        self.other = other
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []
        self.requests: list = []

    def kind(self, request) -> str:
        if "failed a check" in request.prompt:
            return "repair"
        if request.temperature > 0:
            return "sample"
        return "greedy" if request.prompt.startswith("Complete the following") else "other"

    def answer(self, request) -> str:
        kind = self.kind(request)
        with self.lock:
            self.seen.append((kind, request.prompt))
            self.requests.append(request)
            if kind == "other" and self.other is not None:
                return self.other(request.prompt)
            queue = self.queues.get(kind, [WRONG])
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def generate(self, requests):
        out = []
        for r in requests:
            texts = tuple(self.answer(r) for _ in range(r.n))
            tokens = sum(len(t) // 4 for t in texts)
            out.append(Completion(texts=texts, prompt_tokens=len(r.prompt) // 4,
                                  completion_tokens=tokens, latency_s=0.0, model=self.model,
                                  cost=float(len(r.prompt) // 4 + tokens)))
        return out


class Silent(Backend):
    """An optimizer that must not be asked."""

    name = "silent"
    model = "silent"

    def generate(self, requests):
        raise AssertionError("the optimizer was asked")


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2) as sb:
        yield sb


def run(strategy, backend, sandbox, budget, seed=SEED, **config):
    broker = Broker(backend)
    try:
        return solve_with(strategy, seed, ADD, program=broker, optimizer=broker,
                          sandbox=sandbox, config=RepairConfig(iterations=0, budget=budget,
                                                                **config))
    finally:
        broker.close()


def test_best_of_n_draws_as_many_samples_as_the_budget_allows_and_keeps_the_best(sandbox):
    backend = Scripted(greedy=[WRONG], sample=[RIGHT_LONG, WRONG_TOO, RIGHT, WRONG])
    result = run("best-of-n", backend, sandbox, Budget(calls=6, tokens=None, wall_s=None))
    pool = result["candidates"]
    # Six calls: the greedy answer and five samples, every one answered, none past the cap.
    assert result["calls"] == 6 and len(pool) == 6 == result["samples"]
    assert [c["index"] for c in pool] == list(range(6))
    assert pool[0]["patch"] is None and "return a - b" in pool[0]["output"]
    assert all(c["patch"]["operator"] == "set-call-params" for c in pool[1:])
    assert [kind for kind, _ in backend.seen].count("greedy") == 1
    # Selected by the graded score: the right answers beat the wrong ones, and of the right
    # ones the cheaper wins.
    chosen = [c for c in pool if c["selected"]]
    assert len(chosen) == 1 and chosen[0]["score"] == max(c["score"] for c in pool)
    right = [c for c in pool if "a + b" in c["output"]]
    assert chosen[0]["tokens"] == min(c["tokens"] for c in right)
    assert "#" not in result["output"] and result["status"] == "solved"
    assert result["stopped_by"] == "visible_checks" and result["iterations"] == 0


def test_best_of_n_keeps_the_greedy_answer_when_no_sample_scores_higher(sandbox):
    backend = Scripted(greedy=[RIGHT], sample=[WRONG, WRONG_TOO])
    result = run("best-of-n", backend, sandbox, Budget(calls=3, tokens=None, wall_s=None))
    assert len(result["candidates"]) == 3 and result["candidates"][0]["selected"]
    assert result["output"] == result["candidates"][0]["output"]


def test_self_repair_repairs_with_the_check_message_until_the_checks_pass(sandbox):
    backend = Scripted(greedy=[WRONG], repair=[WRONG_TOO, RIGHT])
    result = run("self-repair", backend, sandbox, Budget(calls=10, tokens=None, wall_s=None))
    chain = result["candidates"]
    assert [c["iteration"] for c in chain] == [0, 1, 2] and all(c["selected"] for c in chain)
    assert [c["parent"] for c in chain] == [None, [0, 0], [1, 1]]
    assert result["status"] == "solved" and result["iterations"] == 2 and result["calls"] == 3
    assert "a + b" in result["output"]
    repairs = [prompt for kind, prompt in backend.seen if kind == "repair"]
    # b1's repair prompt, with the visible check's message and the code it was about.
    assert "Check (failing_check)" in repairs[0] and "return a - b" in repairs[0]
    assert "return a * b" in repairs[1]
    assert [r["budget_cut"] for r in result["rounds"]] == [False, False]


def test_self_repair_stops_at_the_budget_and_keeps_the_last_answer(sandbox):
    backend = Scripted(greedy=[WRONG], repair=[WRONG_TOO, RIGHT])
    result = run("self-repair", backend, sandbox, Budget(calls=2, tokens=None, wall_s=None))
    assert result["calls"] == 2 and result["status"] == "budget_exhausted"
    assert result["stopped_by"] == "calls" and "a * b" in result["output"]


def test_self_repair_from_a_class_based_seed_repairs_with_its_code_steps_parameters(sandbox):
    backend = Scripted(repair=[RIGHT])  # the seed's plan and code answers are wrong
    result = run("self-repair", backend, sandbox, Budget(calls=10, tokens=None, wall_s=None),
                 seed=seeds.load("class_based"), step_callees=("self.generate",))
    assert result["status"] == "solved" and result["calls"] == 3
    repair_request = next(r for r in backend.requests if "failed a check" in r.prompt)
    # The code step's literal max_tokens; its temperature is not a literal, so greedy.
    assert (repair_request.max_tokens, repair_request.temperature) == (512, 0.0)


def test_random_choice_asks_no_optimizer_and_is_reproducible(sandbox):
    def repaired(seed, chooser="random"):
        events = []
        program = Broker(Scripted(other=lambda prompt: WRONG_TOO))
        optimizer = Broker(Silent())
        try:
            result = repair(SEED, ADD, program=program, optimizer=optimizer, sandbox=sandbox,
                            config=RepairConfig(iterations=2, proposals=3, chooser=chooser,
                                                rng_seed=seed, budget=Budget(calls=40)),
                            on_event=events.append)
        finally:
            program.close()
            optimizer.close()
        return result, events

    result, events = repaired(0)
    assert not [e for e in events if isinstance(e, LlmEvent) and e.role == "optimizer"]
    assert result.proposals.tried == 6 and result.iterations == 2
    again, _ = repaired(0)
    patches = [c.patch for c in result.candidates]
    assert [c.patch for c in again.candidates] == patches
    assert len({json.dumps(p.to_json(), sort_keys=True) for p in patches if p}) > 1
    # The menus shown are the ones a model would be shown: drawn by the loop's own rng.
    shown = [e.shown for e in events if isinstance(e, MenuEvent)]
    _, model_events = repaired(0, chooser="model")
    assert shown[0] == [e.shown for e in model_events if isinstance(e, MenuEvent)][0]
    assert RepairConfig(chooser="random").digest != RepairConfig().digest
    assert RepairConfig.from_json(RepairConfig(chooser="random").to_json()).chooser == "random"
    assert "chooser" not in RepairConfig().to_json()  # earlier configs keep their digests


def test_a_ranking_other_than_the_score_selects_the_candidates(sandbox):
    """oracle-select's hook: the loop ranks by the function it is given (here: the shorter
    output wins), never by what that function reads."""
    lengths = itertools.cycle(range(5))
    answers: dict[str, str] = {}

    def varied(prompt: str) -> str:
        if prompt not in answers:
            answers[prompt] = WRONG.replace("a - b", "a - b" + " - 0" * next(lengths))
        return answers[prompt]

    program = Broker(Scripted(other=varied))
    try:
        result = repair(SEED, ADD, program=program, optimizer=Broker(Silent()), sandbox=sandbox,
                        config=RepairConfig(iterations=3, proposals=3, chooser="random",
                                            budget=Budget(calls=40)),
                        rank_by=lambda code: -float(len(code)))
    finally:
        program.close()
    incumbent = result.candidates[0]
    for k in range(1, result.iterations + 1):
        round_k = [c for c in result.candidates if c.iteration == k]
        if not round_k:
            continue
        best = min(round_k, key=lambda c: (len(c.output), c.tokens))
        if len(best.output) < len(incumbent.output):
            assert best.selected and sum(c.selected for c in round_k) == 1
            incumbent = best
        else:
            assert not any(c.selected for c in round_k)
    assert result.output == incumbent.output
