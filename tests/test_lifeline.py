"""After `kill -9` of a flowmend command, nothing it started is left running."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flowmend import _lifeline

# A stand-in for a flowmend command: it starts a lifeline, then the kinds of children a real
# one has: a spawned process that ignores SIGTERM (vLLM's engine core), a grandchild of it,
# and a daemon that left the session. It prints their pids and sleeps until killed.
COMMAND = textwrap.dedent("""
    import multiprocessing, os, signal, subprocess, sys, time
    from flowmend import _lifeline

    def engine_core(queue):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        queue.put((os.getpid(), worker.pid))
        time.sleep(600)

    if __name__ == "__main__":
        lifeline = _lifeline.start()
        queue = multiprocessing.get_context("spawn").Queue()
        multiprocessing.get_context("spawn").Process(target=engine_core, args=(queue,)).start()
        core, worker = queue.get(timeout=60)
        daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                  start_new_session=True)
        print(lifeline.process.pid, core, worker, daemon.pid, flush=True)
        time.sleep(600)
""")


def _alive(pid: int) -> bool:
    return _lifeline.start_time(pid) is not None


def _start_command(tmp_path: Path) -> tuple[subprocess.Popen, list[int], int]:
    script = tmp_path / "command.py"
    script.write_text(COMMAND)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop(_lifeline.TOKEN_VARIABLE, None)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env=env, cwd=Path(__file__).parents[1])
    lifeline, *children = map(int, proc.stdout.readline().split())
    assert children and all(_alive(p) for p in children)
    return proc, children, lifeline


def _wait_gone(pids, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfds")
def test_kill_9_of_the_command_ends_every_process_it_started_within_seconds(tmp_path):
    proc, children, lifeline = _start_command(tmp_path)
    time.sleep(2 * _lifeline.SCAN_INTERVAL_S)  # one scan has seen them all
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _wait_gone(children + [lifeline], timeout=10) == []
    assert list((tmp_path / "cache" / "flowmend" / "lifelines").glob("*.json")) == []


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfds")
def test_when_the_lifeline_dies_too_the_next_command_ends_what_its_record_names(tmp_path):
    proc, children, lifeline = _start_command(tmp_path)
    records = tmp_path / "cache" / "flowmend" / "lifelines"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        recorded = [json.loads(p.read_text()) for p in records.glob("*.json")]
        if recorded and set(map(int, recorded[0]["processes"])) >= set(children):
            break
        time.sleep(0.1)
    os.kill(lifeline, signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert all(_alive(p) for p in children)  # nobody was left to end them
    report = _lifeline.reap_stale(records)
    assert report.records == 1 and set(report.ended) >= set(children)
    assert "ended" in report.line()
    assert _wait_gone(children, timeout=10) == []
    assert list(records.glob("*.json")) == []


def test_a_record_never_kills_a_reused_pid_or_a_live_commands_processes(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = _lifeline.start_time(sleeper.pid)
        # A dead owner whose record names our sleeper's pid with another start time: reused pid.
        (tmp_path / "1-1.json").write_text(json.dumps(
            {"pid": 999_999_999, "start": 1, "processes": {str(sleeper.pid): start + 1}}))
        # A live owner (this test process): its processes are its own business.
        (tmp_path / "2-2.json").write_text(json.dumps(
            {"pid": os.getpid(), "start": _lifeline.start_time(os.getpid()),
             "processes": {str(sleeper.pid): start}}))
        report = _lifeline.reap_stale(tmp_path)
        assert report == _lifeline.StaleReport(records=1, ended=())
        assert _alive(sleeper.pid)
        assert not (tmp_path / "1-1.json").exists() and (tmp_path / "2-2.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_normal_stop_ends_the_watchdog_and_its_record(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(_lifeline.TOKEN_VARIABLE, raising=False)  # start() sets it; undo after
    lifeline = _lifeline.start()
    if lifeline is None:
        pytest.skip("needs Linux pidfds")
    deadline = time.monotonic() + 10
    while not lifeline.record.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lifeline.record.exists()
    lifeline.stop()
    assert lifeline.process.poll() is not None
    assert not lifeline.record.exists()
