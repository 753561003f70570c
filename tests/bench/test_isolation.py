"""Isolation is part of a bench result: recorded everywhere, and no run without namespaces
unless asked for, and then said in every output."""

import json

import pytest

from flowmend.bench._store import RESULTS
from flowmend.cli import main
from flowmend.sandbox import describe_isolation

from tests.bench.test_bench_replay import REPLAY


def args(out, *extra):
    return ["bench", "--suite", "humaneval", "--split", "test", "--limit", "1",
            "--budget-calls", "8", "--budget-tokens", "4000", "--budget-wall-s", "36000",
            "--methods", "b0", "--backend", "replay", "--replay", str(REPLAY),
            "--out", str(out), "--no-progress", *extra]


@pytest.fixture
def no_bwrap(monkeypatch):
    """A machine without bubblewrap: the sandbox can only use resource limits."""
    import flowmend.sandbox._isolation as isolation

    monkeypatch.setattr(isolation.shutil, "which", lambda name: None)
    assert describe_isolation()["weak"]


def test_without_namespaces_the_bench_refuses_in_one_line_and_writes_nothing(
        tmp_path, capsys, no_bwrap):
    out = tmp_path / "run"
    assert main(args(out)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no namespaces here (bwrap not found on PATH)" in err and "--allow-weak-isolation" in err
    assert "Traceback" not in err and not out.exists()


def test_allowed_weak_isolation_is_said_in_every_output(tmp_path, capsys, no_bwrap):
    out = tmp_path / "run"
    assert main(args(out, "--allow-weak-isolation")) == 0
    console = " ".join(capsys.readouterr().err.split())
    assert console.count("WARNING: weak isolation") == 2  # at the start and at the end
    info = json.loads((out / "run.json").read_text())
    assert info["identity"]["isolation"] == "rlimits"
    assert info["isolation"]["mode"] == "rlimits" and info["isolation"]["weak"] is True
    records = [json.loads(line) for line in (out / RESULTS).read_text().splitlines()]
    assert records and all(r["isolation"] == "rlimits" for r in records)
    assert main(["report", str(out), "--resamples", "200"]) == 0
    assert "WARNING: weak isolation" in " ".join(capsys.readouterr().out.split())
    assert "**WARNING: weak isolation" in (out / "REPORT.md").read_text()


def test_a_run_with_namespaces_records_its_mode(tmp_path, capsys):
    found = describe_isolation()
    if found["weak"]:
        pytest.skip(f"this machine has no namespaces: {found['reason']}")
    out = tmp_path / "run"
    assert main(args(out)) == 0
    assert "WARNING" not in capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    assert info["isolation"]["mode"] == info["identity"]["isolation"] == found["mode"]
    assert not info["isolation"]["weak"] and info["isolation"]["namespaces"]
    records = [json.loads(line) for line in (out / RESULTS).read_text().splitlines()]
    assert all(r["isolation"] == found["mode"] for r in records)
    assert main(["report", str(out), "--resamples", "200"]) == 0
    assert f"sandbox isolation: `{found['mode']}`" in (out / "REPORT.md").read_text()
