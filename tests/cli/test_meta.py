"""`flowmend meta show` and `flowmend repair --setup`: a learned set-up directory read back by
the command line, and refused in one line when it cannot be used."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from flowmend import seeds
from flowmend.engine import RepairConfig
from flowmend.meta import LearnedSetup, Setup

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "engine" / "data"


def _flowmend(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowmend", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def _saved(tmp_path: Path, config: RepairConfig, model: str = "smollm2") -> Path:
    base = RepairConfig()
    source = seeds.load("single_shot")
    learned = LearnedSetup(setup=Setup("single_shot", source, config),
                           default=Setup("single_shot", source, base),
                           models={"program": model, "optimizer": model},
                           splits={"train": "t", "val": "v"},
                           search={"chosen": {"trial": 3, "val": 0.25}},
                           cost={"trials": 4, "evaluations": 9, "tokens": 1234,
                                 "study_wall_s": 5.0})
    return learned.save(tmp_path / "learned")


def test_meta_show_sets_the_learned_set_up_beside_the_default(tmp_path):
    weights = replace(RepairConfig().weights, beta=0.125)
    directory = _saved(tmp_path, RepairConfig(iterations=2, proposals=2, weights=weights))
    result = _flowmend("meta", "show", str(directory))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "iterations × proposals" in out and "4 × 4" in out and "2 × 2" in out
    assert "0.125" in out and "choice_template: unchanged" in out
    assert "operator library: unchanged" in out and "1,234 tokens" in out


def test_repair_with_a_learned_set_up_runs_its_config(tmp_path):
    directory = _saved(tmp_path, RepairConfig(iterations=2, proposals=2))
    common = ["repair", "examples/workflows/single_shot.py", "--task-file",
              str(DATA / "add_task.json"), "--backend", "replay", "--replay",
              str(DATA / "replay_add.jsonl"), "--json"]
    by_flags = _flowmend(*common, "--iterations", "2", "--proposals", "2", "--out",
                         str(tmp_path / "a"))
    by_setup = _flowmend(*common, "--setup", str(directory), "--out", str(tmp_path / "b"))
    assert by_flags.returncode == by_setup.returncode == 0, by_setup.stderr
    a, b = json.loads(by_flags.stdout), json.loads(by_setup.stdout)
    for key in ("status", "iterations", "calls", "tokens", "output", "config_digest"):
        assert a[key] == b[key], key


def test_a_set_up_that_cannot_be_used_is_refused_in_one_line(tmp_path):
    directory = _saved(tmp_path, RepairConfig(iterations=2, proposals=2), model="other-model")
    for argv, message in (
            (["meta", "show", str(tmp_path)], "not a learned set-up directory"),
            (["repair", "examples/workflows/single_shot.py", "--task-file",
              str(DATA / "add_task.json"), "--setup", str(directory)],
             "learned with model 'other-model', not 'smollm2'")):
        result = _flowmend(*argv)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_bench_with_a_learned_set_up_adds_it_and_its_default_as_two_methods(tmp_path):
    from flowmend.bench.methods import Method
    from flowmend.cli.bench import _setup_methods

    weights = replace(RepairConfig().weights, beta=0.125)
    directory = _saved(tmp_path, RepairConfig(iterations=2, proposals=2, weights=weights))
    meta, default = _setup_methods(str(directory), "smollm2")
    assert (meta.name, default.name) == ("meta", "meta-default") and default.baseline
    assert meta.config.weights.beta == 0.125 and meta.seed_source == seeds.load("single_shot")
    assert meta.to_json()["seed_workflow"] == "single_shot"
    assert "seed_workflow" not in Method(name="x").to_json()  # old identities unchanged
    replay = ROOT / "tests" / "chaos" / "data" / "humaneval_test4_smollm2.replay.jsonl"
    result = _flowmend("bench", "--suite", "humaneval", "--limit", "1", "--methods", "b0",
                       "--setup", str(directory), "--backend", "replay", "--replay",
                       str(replay), "--out", str(tmp_path / "run"), "--no-progress",
                       "--budget-calls", "1")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").open()]
    assert sorted(r["method"] for r in records) == ["b0", "meta", "meta-default"]
