"""The seed workflows as package data, and the user-facing copies in examples/workflows/."""

from pathlib import Path

import pytest

from flowmend import seeds
from flowmend.engine import parse_workflow
from flowmend.errors import UserError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


def test_the_examples_are_copies_of_the_seeds():
    assert seeds.ids() == tuple(sorted(p.stem for p in EXAMPLES.glob("*.py")))
    for seed_id in seeds.ids():
        assert seeds.load(seed_id) == (EXAMPLES / f"{seed_id}.py").read_text(), seed_id


def test_the_seeds_the_bench_and_the_main_job_use_are_workflows():
    assert {"single_shot", "plan_then_code"} <= set(seeds.ids())
    for seed_id in ("single_shot", "plan_then_code"):
        assert parse_workflow(seeds.load(seed_id)).steps


def test_an_unknown_seed_names_the_known_ones():
    with pytest.raises(UserError, match="unknown seed workflow 'nope'; known: .*single_shot"):
        seeds.load("nope")


def test_the_bench_reads_a_seed_by_id_or_path_from_any_folder(tmp_path, monkeypatch):
    from flowmend.bench._bench import read_seed_workflow

    single = seeds.load("single_shot")
    assert read_seed_workflow("single_shot") == (single, "seed:single_shot")
    monkeypatch.chdir(tmp_path)  # the command line's default path, outside a checkout
    assert read_seed_workflow("examples/workflows/single_shot.py")[0] == single
    mine = tmp_path / "mine.py"
    mine.write_text("def solve(task):\n    return llm(task.prompt)\n")
    assert read_seed_workflow(str(mine)) == (mine.read_text(), str(mine))
    with pytest.raises(UserError, match="cannot read the seed workflow"):
        read_seed_workflow(str(tmp_path / "missing.py"))
    with pytest.raises(UserError, match="no seed workflow 'plan_then_cod'.*single_shot"):
        read_seed_workflow("plan_then_cod")
