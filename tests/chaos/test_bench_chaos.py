"""Chaos on a real `flowmend bench` process (replay backend, real loop and sandbox): killed at
random moments, interrupted, fighting over a folder, out of disk. Nothing finished is lost,
nothing is recorded twice, nothing it started is left running."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from flowmend import _lifeline
from flowmend.bench._store import RESULTS, read_results
from tests.llm.recordings import one_answer_per_request

ROOT = Path(__file__).parents[2]
# Every answer SmolLM2 gave in one run of the greedy methods on four tasks (data/README.md).
RECORDING = Path(__file__).parent / "data" / "humaneval_test4_smollm2.replay.jsonl"
# b0 and b1 make their calls one after another. b2's parallel proposals book the budget
# together, so where it stops depends on timing, and a killed run could not be compared.
METHODS = ("b0", "b1")
JOBS = 4 * len(METHODS)


@pytest.fixture(scope="module")
def replay(tmp_path_factory) -> Path:
    """The recording with one answer per request. Under batching, vLLM's greedy answers to two
    identical requests can differ, and a replay hands them out in arrival order, which a resume
    restarts: with one answer each, a resumed run must equal an uninterrupted one exactly."""
    return one_answer_per_request(RECORDING, tmp_path_factory.mktemp("replay") / "replay.jsonl")


@pytest.fixture(scope="module")
def uninterrupted(replay, tmp_path_factory) -> dict:
    """What a run that nobody disturbs records, per (task, method)."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    finish(tmp / "run", tmp, replay)
    return {f"{r['task_id']}|{r['method']}": summary(r) for r in read_results(tmp / "run")}


def bench_args(out: Path, replay: Path, *extra: str) -> list[str]:
    return ["bench", "--suite", "humaneval", "--split", "test", "--limit", "4",
            "--budget-calls", "8", "--budget-tokens", "4000", "--budget-wall-s", "36000",
            "--methods", ",".join(METHODS), "--backend", "replay", "--replay", str(replay),
            "--model", "smollm2", "--out", str(out), "--no-progress", *extra]


def summary(record: dict) -> dict:
    keep = ("status", "stopped_by", "iterations", "calls", "tokens", "passed", "hidden", "output")
    return {k: record[k] for k in keep}


def start(out: Path, tmp_path: Path, replay: Path, *extra: str) -> subprocess.Popen:
    """`flowmend bench` as the command it is (argv from the shell, so it gets its lifeline)."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop(_lifeline.TOKEN_VARIABLE, None)
    return subprocess.Popen([sys.executable, "-m", "flowmend", *bench_args(out, replay, *extra)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def lines(out: Path) -> int:
    path = out / RESULTS
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_for_records(proc: subprocess.Popen, out: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and lines(out) < count:
        time.sleep(0.05)


def survivors(before: dict[int, int], timeout: float = 10.0) -> list[int]:
    """Which of `before` (pid → start time) are still the same live process after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p, t in before.items() if _lifeline.alive(p, t)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def assert_complete_and_faithful(out: Path, uninterrupted: dict) -> None:
    rows = read_results(out)
    assert Counter(f"{r['task_id']}|{r['method']}" for r in rows) == Counter(
        {key: 1 for key in uninterrupted})
    assert (out / RESULTS).read_bytes().endswith(b"\n")
    assert {f"{r['task_id']}|{r['method']}": summary(r) for r in rows} == uninterrupted


def finish(out: Path, tmp_path: Path, replay: Path) -> None:
    proc = start(out, tmp_path, replay)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]


def test_kill_9_at_20_random_moments_loses_and_repeats_nothing(tmp_path, replay, uninterrupted):
    out = tmp_path / "run"
    rng = random.Random(20261202)
    left_after_kills, progress = [], []
    for i in range(20):
        proc = start(out, tmp_path, replay, "--concurrency", "1")
        if i % 4:  # a moment in start-up (imports, planning, the lock, the sandbox) or early work
            time.sleep(rng.uniform(0.2, 3.0))
        else:  # a moment in the work: after this attempt's first record, inside the next job
            wait_for_records(proc, out, lines(out) + 1)
            time.sleep(rng.uniform(0.0, 0.8))
        started = _lifeline.descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        left_after_kills.append(len(survivors(started)))
        progress.append(len(read_results(out)) if out.exists() else 0)  # readable after each
    assert left_after_kills == [0] * 20, left_after_kills
    # Kills landed in start-up and inside jobs, while the run was unfinished and advancing.
    assert progress[0] < JOBS and any(0 < p < JOBS for p in progress), progress
    finish(out, tmp_path, replay)
    assert_complete_and_faithful(out, uninterrupted)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_at_random_moments_exit_cleanly_with_no_leftovers(tmp_path, sig, replay,
                                                                             uninterrupted):
    out = tmp_path / "run"
    rng = random.Random(int(sig))
    for _ in range(3):
        proc = start(out, tmp_path, replay, "--concurrency", "1")
        time.sleep(rng.uniform(0.5, 5.0))
        started = _lifeline.descendants(proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        text = err.decode()
        # Unwound (143, 130), finished first (0), or, for a signal that came while the
        # interpreter itself was still starting, ended by it where nothing had started yet.
        assert proc.returncode in (0, 130, 128 + signal.SIGTERM, -sig), text[-2000:]
        assert "Traceback" not in text, text[-3000:]
        assert survivors(started) == []
    finish(out, tmp_path, replay)
    assert_complete_and_faithful(out, uninterrupted)


def test_a_second_bench_on_the_same_folder_refuses_in_one_line(tmp_path, replay, uninterrupted):
    out = tmp_path / "run"
    first = start(out, tmp_path, replay, "--concurrency", "1")
    try:
        wait_for_records(first, out, 1)
        first.send_signal(signal.SIGSTOP)  # it holds the folder's lock, and keeps holding it
        assert first.poll() is None
        before = (out / RESULTS).read_bytes()
        second = start(out, tmp_path, replay)
        _, err = second.communicate(timeout=120)
        message = err.decode().strip()
        assert second.returncode == 2
        assert len(message.splitlines()) == 1 and "another `flowmend bench`" in message
        assert (out / RESULTS).read_bytes().startswith(before)
    finally:
        first.send_signal(signal.SIGKILL)
        first.send_signal(signal.SIGCONT)
        first.wait()
        first.stderr.close()
    finish(out, tmp_path, replay)
    assert_complete_and_faithful(out, uninterrupted)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_disk_that_fills_up_mid_run_is_one_line_and_a_resume_completes(tmp_path, replay,
                                                                          uninterrupted):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = mount / "run"
        proc = start(out, tmp_path, replay, "--concurrency", "1")
        wait_for_records(proc, out, 1)
        ballast = mount / "ballast"
        with open(ballast, "wb", buffering=0) as fh:  # take every byte that is left
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
        _, err = proc.communicate(timeout=300)
        message = err.decode().strip().splitlines()
        if proc.returncode == 0:
            pytest.skip("the run finished before the disk filled up")
        assert proc.returncode == 2, "\n".join(message[-20:])
        assert "Traceback" not in err.decode()
        assert message[-1].startswith("error:") and "No space left on device" in message[-1]
        kept = read_results(out)  # still readable: whole records only
        assert 1 <= len(kept) < JOBS
        assert (out / RESULTS).read_bytes().endswith(b"\n")
        ballast.unlink()
        finish(out, tmp_path, replay)
        assert_complete_and_faithful(out, uninterrupted)
    finally:
        subprocess.run(["umount", "-l", str(mount)])
