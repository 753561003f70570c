"""`kill -9` of a flowmend command that runs a real vLLM engine leaves no engine core behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowmend import _lifeline

pytestmark = [pytest.mark.model, pytest.mark.slow]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_kill_9_of_a_command_with_a_vllm_engine_leaves_no_engine_core(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), VLLM_CPU_KVCACHE_SPACE="1")
    env.pop(_lifeline.TOKEN_VARIABLE, None)
    command = [sys.executable, "-m", "flowmend", "perf", "llm", "--max-tokens", "2000",
               "--repeat", "50", "--kv-cache-gib", "1"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        engine = []
        while time.monotonic() < deadline and proc.poll() is None and not engine:
            engine = _lifeline.descendants(proc.pid, cmdline_prefix=b"VLLM::EngineCore")
            time.sleep(0.5)
        assert engine, "the engine core never started"
        time.sleep(1)  # one lifeline scan sees it
        started = _lifeline.descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = [p for p, t in started.items() if _lifeline.alive(p, t)]
            if not left:
                break
            time.sleep(0.2)
        assert left == [], [_cmdline(p) for p in left]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
