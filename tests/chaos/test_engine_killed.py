"""The real vLLM engine killed under a running bench: the bench stops, records no job as a
wrong failure, and a resume with a new engine completes the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowmend import _lifeline
from flowmend.bench._store import RESULTS, read_results

pytestmark = [pytest.mark.model, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
TASKS = 3


def bench(out: Path, tmp_path: Path) -> subprocess.Popen:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), VLLM_CPU_KVCACHE_SPACE="1")
    env.pop(_lifeline.TOKEN_VARIABLE, None)
    argv = [sys.executable, "-m", "flowmend", "bench", "--suite", "humaneval", "--split", "test",
            "--limit", str(TASKS), "--methods", "b0", "--budget-calls", "4",
            "--budget-tokens", "2000", "--concurrency", "1", "--backend", "vllm",
            "--out", str(out), "--no-progress"]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def engine_core(proc: subprocess.Popen) -> int | None:
    found = _lifeline.descendants(proc.pid, cmdline_prefix=b"VLLM::EngineCore")
    return min(found, default=None)


def test_killing_the_engine_mid_bench_stops_it_cleanly_and_a_resume_completes(tmp_path):
    out = tmp_path / "run"
    proc = bench(out, tmp_path)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / RESULTS).exists() and (out / RESULTS).read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.1)
        core = engine_core(proc)
        assert core is not None and proc.poll() is None, "no engine running after a first record"
        os.kill(core, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    message = err.decode().strip().splitlines()
    assert proc.returncode == 2, "\n".join(message[-20:])
    assert message[-1].startswith("error:") and "stopped" in message[-1]
    kept = read_results(out)
    assert 1 <= len(kept) < TASKS
    # No job was recorded as a failure because the engine vanished under it.
    assert all(r["status"] != "error" for r in kept), [r.get("error") for r in kept]
    again = bench(out, tmp_path)
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err.decode()[-2000:]
    assert sorted(r["task_id"] for r in read_results(out)) == sorted(
        {r["task_id"] for r in read_results(out)}) and len(read_results(out)) == TASKS
