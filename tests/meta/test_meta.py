"""The meta loop on a small real study: real Optuna storage, the real sandbox, a scripted
model (tests/meta/oracle.py) that knows half of the tasks."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from flowmend.bench.splits import split_of
from flowmend.engine import RepairConfig
from flowmend.errors import UserError
from flowmend.meta import (EvalCache, LearnedSetup, SearchSpace, cache_key, learn, meta_split,
                           report, train)
from flowmend.meta._study import OWNER, RETRY_OF, STUDY_NAME, storage_for
from tests.meta import oracle

ROOT = Path(__file__).parents[2]


def test_meta_splits_are_disjoint_cut_train_and_keep_the_benchs_val_and_test():
    ids = [p.task.task_id for p in oracle.PROBLEMS] + [f"HumanEval/{i}" for i in range(164)]
    for tid in ids:
        split = meta_split(tid)
        bench = split_of(tid)
        assert split == bench or (bench == "train" and split in ("train-search", "train-confirm"))
    counts = Counter(meta_split(t) for t in ids)
    assert counts["train-search"] > counts["train-confirm"] > 0


def test_the_default_set_up_is_the_base_config_and_every_suggestion_is_a_valid_config():
    space = SearchSpace(seeds={"a": "def solve(task):\n    return llm(task.prompt)\n"},
                        base=RepairConfig())
    default = space.suggest(optuna.trial.FixedTrial(space.default_params()))
    assert default.config.digest == RepairConfig().digest
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    digests = set()
    for _ in range(20):
        setup = space.suggest(study.ask())
        assert RepairConfig.from_json(setup.config.to_json()).digest == setup.config.digest
        digests.add(setup.digest())
    assert len(digests) == 20


def test_cache_keys_name_every_part_and_records_round_trip(tmp_path):
    parts = dict(setup="s", library="l", task_id="Mbpp/1", rng_seed=0, model="m")
    key = cache_key(**parts)
    assert len({cache_key(**{**parts, k: v}) for k, v in
                [("setup", "t"), ("library", "k"), ("task_id", "Mbpp/2"), ("rng_seed", 1),
                 ("model", "n")]} | {key}) == 6
    cache = EvalCache(tmp_path)
    assert cache.get(key) is None
    cache.put(key, {"hidden": 0.5})
    assert cache.get(key) == {"hidden": 0.5} and len(cache) == 1


def test_a_study_learns_on_val_and_a_rerun_evaluates_nothing_again(tmp_path):
    plan = oracle.plan(tmp_path)
    learned = train(plan, problems=oracle.PROBLEMS, models=oracle.models())
    assert LearnedSetup.load(tmp_path / "learned") == learned
    rows = learned.search["finalists"]
    assert any(r["default"] and r["trial"] == 0 for r in rows)
    chosen = max(rows, key=lambda r: (r["val"], -r["tokens_per_task"]))
    assert learned.search["chosen"] == chosen
    assert learned.default.config.digest == plan.space().base.digest
    assert learned.cost["evaluations"] == len(EvalCache(tmp_path / "cache")) > 0
    trials = _trials(tmp_path)
    assert len(trials) == plan.trials
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    cached = len(EvalCache(tmp_path / "cache"))
    assert cached > 0

    backend_models = oracle.models()
    again = train(plan, problems=oracle.PROBLEMS, models=backend_models)
    assert backend_models.program.backend.requests == 0  # every evaluation came from the cache
    assert len(_trials(tmp_path)) == plan.trials and len(EvalCache(tmp_path / "cache")) == cached
    assert again.search["chosen"] == learned.search["chosen"]


def test_a_study_made_with_other_settings_is_refused_in_one_line(tmp_path):
    train(oracle.plan(tmp_path, trials=1), problems=oracle.PROBLEMS, models=oracle.models(),
          finalize=False)
    with pytest.raises(UserError, match=r"other settings \(minibatch\)"):
        train(oracle.plan(tmp_path, trials=1, minibatch=3), problems=oracle.PROBLEMS,
              models=oracle.models(), finalize=False)


def test_the_report_touches_test_once(tmp_path):
    plan = oracle.plan(tmp_path, trials=2)
    train(plan, problems=oracle.PROBLEMS, models=oracle.models())
    first = oracle.models()
    path = report(plan, problems=oracle.PROBLEMS, models=first, resamples=200)
    text = path.read_text()
    assert "Held-out test split" in text and "| learned" in text and "| default" in text
    kept = json.loads((tmp_path / "test.json").read_text())
    tests = [p.task.task_id for p in oracle.PROBLEMS if meta_split(p.task.task_id) == "test"]
    assert sorted(r["task_id"] for r in kept["records"]) == sorted(tests * 2)
    assert first.program.backend.requests > 0

    second = oracle.models()
    assert report(plan, problems=oracle.PROBLEMS, models=second, resamples=200).read_text() == text
    assert second.program.backend.requests == 0

    learned = LearnedSetup.load(tmp_path / "learned")
    replace_setup = dataclasses.replace(
        learned, setup=dataclasses.replace(
            learned.setup, config=dataclasses.replace(learned.setup.config, iterations=1)))
    replace_setup.save(tmp_path / "learned")
    with pytest.raises(UserError, match="test was already used"):
        report(plan, problems=oracle.PROBLEMS, models=oracle.models(), resamples=200)


def test_two_workers_share_one_study(tmp_path):
    workers = [_worker(tmp_path, "--trials", "6"),
               _worker(tmp_path, "--trials", "6", "--follower")]
    for w in workers:
        assert w.wait(timeout=300) == 0, w.stderr.read()
    trials = _trials(tmp_path)
    assert len(trials) == 6 and len({t.number for t in trials}) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    owners = {t.user_attrs[OWNER]["pid"] for t in trials}
    assert owners == {w.pid for w in workers}
    learned = train(oracle.plan(tmp_path, trials=6), problems=oracle.PROBLEMS,
                    models=oracle.models())
    assert learned.search["chosen"]["trial"] in {t.number for t in trials}


def test_a_worker_killed_with_9_is_resumed_without_rerunning_what_finished(tmp_path):
    proc = _worker(tmp_path, "--trials", "3", "--slow", "0.3")
    deadline = time.monotonic() + 240
    running = None
    while time.monotonic() < deadline and running is None:
        time.sleep(0.5)
        trials = _trials(tmp_path, missing_ok=True)
        running = next((t for t in trials if t.state == TrialState.RUNNING and t.number >= 1
                        and len(t.intermediate_values) >= 1), None)
    assert running is not None, "no trial got under way"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.state, t.value) for t in _trials(tmp_path)
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*/*.json")}
    assert before and written

    resumed = _worker(tmp_path, "--trials", "3")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    trials = _trials(tmp_path)
    for number, (state, value) in before.items():  # finished trials stand as they were
        assert (trials[number].state, trials[number].value) == (state, value)
    killed = trials[running.number]
    assert killed.state == TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get(RETRY_OF) == running.number]
    assert len(retry) == 1 and retry[0].params == killed.params
    assert retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    for path, mtime in written.items():  # nothing evaluated before the kill was evaluated again
        assert path.stat().st_mtime_ns == mtime


def test_meta_train_refuses_bad_flags_in_one_line(tmp_path):
    from flowmend.cli import main

    for argv, message in ((["--trials", "0"], "--trials must be at least 1"),
                          (["--template-mutations", "17"], "--template-mutations must lie"),
                          (["--split-limit", "0"], "--split-limit must be at least 1"),
                          (["--seeds", "nosuch"], "unknown seed workflow 'nosuch'"),
                          (["--backend", "replay"], "--backend replay needs --replay FILE")):
        result = subprocess.run([sys.executable, "-m", "flowmend", "meta", "train", "--out",
                                 str(tmp_path / "x"), *argv], cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert main(["meta"]) == 2
    assert not (tmp_path / "x").exists()


def _worker(out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.meta.oracle", str(out), *args],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _trials(out: Path, *, missing_ok: bool = False):
    if missing_ok and not (out / "study.journal").exists():
        return []
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage_for(None, out))
    except KeyError:  # the worker has not created the study yet
        if missing_ok:
            return []
        raise
    return study.get_trials(deepcopy=False)


def _feedback(passed: int, failed: int, *, error: str | None = None) -> dict:
    from flowmend.verifier import CheckOutcome, Feedback

    checks = tuple(CheckOutcome(f"t{i}", "passed" if i < passed else "failed")
                   for i in range(passed + failed))
    return Feedback(task_id="t", code="x = 1", compiled=True, runtime_error=error,
                    checks=checks).to_json()


def test_verifier_weights_are_fitted_from_stored_candidates_alone():
    from flowmend.meta._weights import fit_weights
    from flowmend.verifier import ScoreWeights

    # Per task: a candidate that passes half its visible checks but crashes on one is right
    # (hidden 1), one that passes a fifth cleanly is wrong (hidden 0). β = 0.5 ranks them the
    # wrong way round; a small β ranks them right.
    records = [{"task_id": f"T/{i}", "setup": "s",
                "candidates": [{"hidden": 1.0}, {"hidden": 0.0}],
                "candidate_feedback": [_feedback(5, 5, error="ValueError"), _feedback(2, 8)]}
               for i in range(6)]
    fit = fit_weights(records, ScoreWeights(), trials=60)
    assert fit.pairs == 6
    assert fit.gamma_before == -0.5 and fit.gamma_after == 0.5
    assert fit.weights.beta < 0.3
    assert fit_weights([{"task_id": "T", "candidates": [{"hidden": 1.0}],
                         "candidate_feedback": [_feedback(1, 0)]}], ScoreWeights()) is None


def test_learn_returns_a_new_value_and_its_directory_round_trips_or_refuses_in_one_line(
        tmp_path):
    from flowmend.bench.splits import select

    base = RepairConfig(iterations=2, proposals=2)
    before = base.to_json()
    train_set = select(oracle.PROBLEMS, "train", task_id=lambda p: p.task.task_id)
    val_set = select(oracle.PROBLEMS, "val", task_id=lambda p: p.task.task_id)
    learned = learn(base, train=train_set, val=val_set, out=tmp_path / "study",
                    models=oracle.models(), trials=2, minibatch=3, model="oracle")
    assert base.to_json() == before
    assert learned.default.config.iterations == 2 and learned.models["program"] == "oracle"
    saved = learned.save(tmp_path / "copy")
    assert LearnedSetup.load(saved) == learned
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "study"]  # no temporaries
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["setup_digest"] == learned.setup.digest()
    assert manifest["library_digest"] == learned.library_digest
    assert set(manifest["splits"]) == {"train", "val"}

    with pytest.raises(UserError, match="learned with model 'oracle', not 'smollm2'"):
        LearnedSetup.load(saved, model="smollm2")
    with pytest.raises(UserError, match="not a learned set-up directory"):
        LearnedSetup.load(tmp_path)
    setup = json.loads((saved / "setup.json").read_text())
    setup["config"]["library"]["digest"] = "0" * 64
    (saved / "setup.json").write_text(json.dumps(setup))
    with pytest.raises(UserError, match="does not match the operators"):
        LearnedSetup.load(saved)


def test_template_variants_join_the_search_with_lineage_and_rejections_are_kept(tmp_path):
    from flowmend.meta._templates import TemplatePool

    plan = oracle.plan(tmp_path, trials=3, template_mutations=2)
    learned = train(plan, problems=oracle.PROBLEMS, models=oracle.models())
    pool = TemplatePool(tmp_path / "templates.json")
    accepted = [v for v in pool.variants.values() if v.accepted]
    rejected = [v for v in pool.variants.values() if not v.accepted]
    assert {v.field for v in accepted} == {"choice_template", "text_template"}
    assert all(v.text.startswith("Be brief.\n") and v.parent == "default" for v in accepted)
    assert all(v.model == "oracle" for v in pool.variants.values())
    assert {v.text for v in rejected} == {"No fields here."}
    assert {v.field for v in rejected} == {"choice_template", "text_template"}
    assert all("missing required field" in v.reason for v in rejected)
    trials = _trials(tmp_path)
    assert trials[0].params["choice_template"] == "default"
    assert {"choice_template", "text_template"} <= set(trials[1].params)
    # Asked again, the model proposes nothing new: what it said before is never re-proposed.
    before = dict(pool.variants)
    assert pool.mutate(oracle.models().optimizer, "choice_template",
                       learned.default.config.optimizer, model="oracle", tries=2) == []
    assert pool.variants == before
