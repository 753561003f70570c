"""Library evolution: macros mined from improving patch sequences, gated like the built-ins,
admitted only when a paired evaluation (real sandbox, scripted model) says they help, and
every decision remembered."""

from __future__ import annotations

import json

import pytest

from flowmend import seeds
from flowmend.cli.meta import _generation_library
from flowmend.bench.splits import select
from flowmend.engine import Budget, RepairConfig, load_library
from flowmend.errors import UserError
from flowmend.llm import Broker
from flowmend.meta import EvalCache, Evaluator, Setup
from flowmend.meta._library import LibraryEvolution, improving_runs, macro_digest, propose_macros
from tests.meta import oracle


def _record(task: str, *, gains: bool, ops=("insert-verify-step", "wrap-in-retry"),
            attempts: int = 2) -> dict:
    """A run whose seed failed and whose second proposal, made from the first on the same
    step, passed (when `gains`)."""
    patches = [{"op": ops[0], "target": {"step": "code"}, "args": {}},
               {"op": ops[1], "target": {"step": "code"},
                "args": {"max_attempts": attempts, "until": "verify"}}]
    return {"task_id": task, "candidates": [
        {"iteration": 0, "index": 0, "parent": None, "patch": None, "hidden": 0.0},
        {"iteration": 1, "index": 1, "parent": [0, 0], "patch": patches[0], "hidden": 0.0},
        {"iteration": 2, "index": 1, "parent": [1, 1], "patch": patches[1],
         "hidden": 1.0 if gains else 0.0},
    ]}


def test_the_miner_turns_repeated_improving_runs_into_a_macro_with_holes():
    records = [_record("T/1", gains=True, attempts=2), _record("T/2", gains=True, attempts=3),
               _record("T/3", gains=True, attempts=2), _record("T/4", gains=False)]
    runs = improving_runs(records)
    assert [r.ops for r in runs] == [("insert-verify-step", "wrap-in-retry")] * 3
    [macro] = propose_macros(records)
    assert macro["name"] == "insert-verify-step-then-wrap-in-retry"
    assert macro["sequence"][1]["args"] == {"max_attempts": "$max_attempts", "until": "verify"}
    assert macro["params"]["max_attempts"]["default"] == 2  # the most common value
    assert "raised hidden utility 3 times" in macro["description"]
    example = macro["examples"][0]
    assert "range(2)" in example["after"] and "verify(" in example["after"]
    assert propose_macros(records, known=[macro_digest(macro)]) == []
    assert propose_macros(records[:1]) == []  # seen once: not a pattern


def test_a_macro_that_helps_is_admitted_and_one_that_does_not_is_rejected_and_remembered(
        tmp_path, monkeypatch):
    records = [_record(f"T/{i}", gains=True) for i in range(3)]
    problems = select(oracle.PROBLEMS, "train", task_id=lambda p: p.task.task_id)[:3]
    source = seeds.load("single_shot")
    setup = Setup("single_shot", source, RepairConfig(iterations=1, proposals=1))

    def evaluator(backend) -> Evaluator:
        from flowmend.sandbox import Sandbox

        sandbox = Sandbox(workers=2)
        broker = Broker(backend)
        evaluators.append((sandbox, broker))
        return Evaluator(program=broker, optimizer=broker, sandbox=sandbox,
                         cache=EvalCache(tmp_path / f"cache-{len(evaluators)}"),
                         model="oracle", budget=Budget(calls=6, tokens=20_000, wall_s=60))

    evaluators: list = []
    try:
        # A model that fixes code it is told failed a check: the macro's verify step helps.
        helped = evaluator(oracle.RepairOracle())
        evolution = LibraryEvolution(tmp_path / "study")
        generation = evolution.evolve(
            records, setup=setup, tasks=problems, fuzz_examples=5, prune=True,
            evaluate=lambda s, tasks: [helped.evaluate(s, t) for t in tasks])
        assert generation["admitted"] == ["insert-verify-step-then-wrap-in-retry"]
        # Leave-one-out: only the macro's removal costs anything here (the optimizer picks it
        # whenever it is offered); the others never helped on these tasks and are deprecated:
        # listed, and kept in the library.
        deprecated = {d["operator"] for d in generation["deprecated"]}
        assert deprecated == set(load_library(["builtin"]).names())
        assert set(load_library(generation["specs"]).names()) > deprecated
        [decision] = evolution.decisions()
        assert decision["admitted"] and decision["delta"] > 0 and decision["n"] == 3
        library = load_library(generation["specs"])
        assert library.digest == generation["digest"] != load_library(["builtin"]).digest
        assert "insert-verify-step-then-wrap-in-retry" in library.names()

        # Proposed again: nothing, since its digest was decided.
        again = evolution.evolve(records, setup=setup, tasks=problems, fuzz_examples=5,
                                 evaluate=lambda s, tasks: [helped.evaluate(s, t) for t in tasks])
        assert again["admitted"] == [] and len(evolution.decisions()) == 1

        # A model that never fixes anything: the same macro does not help, and is rejected.
        other = LibraryEvolution(tmp_path / "other")
        flat = evaluator(oracle.OracleBackend())
        rejected = other.evolve(records, setup=setup, tasks=problems, fuzz_examples=5,
                                evaluate=lambda s, tasks: [flat.evaluate(s, t) for t in tasks])
        assert rejected["admitted"] == [] and rejected["digest"] == load_library(["builtin"]).digest
        [no] = other.decisions()
        assert not no["admitted"] and no["delta"] <= 0 and no["gate"] == []
        assert not (tmp_path / "other" / "library" / f"{no['name']}.json").exists()
    finally:
        for sandbox, broker in evaluators:
            broker.close()
            sandbox.close()


def test_a_generation_of_a_real_study_and_training_on_it(tmp_path):
    from flowmend.meta import evolve_library, train

    plan = oracle.plan(tmp_path, trials=2)
    train(plan, problems=oracle.PROBLEMS, models=oracle.models())
    generation = evolve_library(plan, problems=oracle.PROBLEMS, models=oracle.models(),
                                fuzz_examples=5)
    # The scripted optimizer's proposals never apply, so no lineage gained: nothing to mine.
    assert generation["generation"] == 1 and generation["admitted"] == []
    assert generation["digest"] == load_library(["builtin"]).digest
    path = tmp_path / "library" / "generation-1.json"
    assert json.loads(path.read_text()) == generation

    assert _generation_library(str(path)).digest == generation["digest"]
    bad = dict(generation, digest="0" * 64)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(UserError, match="digest mismatch"):
        _generation_library(str(tmp_path / "bad.json"))
