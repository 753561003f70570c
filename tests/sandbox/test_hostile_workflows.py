"""Hostile *workflows*: the threats from the other side of the RPC channel.

Each case runs a workflow through the engine's real runtime (`run_workflow`) in the real
sandbox, with a small echo model, and asserts three things: the verdict, the budget (no cap is
passed, the wall clock included), and the host afterwards (no process of the sandbox's users
survives, and the next run works).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flowmend.engine import Budget, parse_workflow
from flowmend.engine._runtime import Meter, RunContext, run_workflow
from flowmend.llm import Broker
from flowmend.task import Task
from tests.llm.backends import EchoBackend
from tests.sandbox.conftest import describe, sandbox_processes

TASK = Task.from_json(json.loads(
    (Path(__file__).parents[1] / "engine" / "data" / "add_task.json").read_text()))
TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def broker():
    with Broker(EchoBackend()) as b:
        yield b


def run(sandbox, broker, body: str, *, budget: Budget = Budget(calls=1000, tokens=10**7),
        timeout_s: float = TIMEOUT_S, max_verify_calls: int = 32):
    """Run `def solve(task): <body>` (a workflow that also calls llm once, so it has a step)."""
    source = "def solve(task):\n    _ = llm('step')\n" + "".join(
        f"    {line}\n" for line in body.strip("\n").splitlines())
    meter = Meter(budget)
    ctx = RunContext(workflow=parse_workflow(source), task=TASK, program=broker,
                     sandbox=sandbox, meter=meter)
    started = time.monotonic()
    record = run_workflow(ctx, timeout_s=timeout_s, max_verify_calls=max_verify_calls)
    return record, meter, time.monotonic() - started


def host_is_clean(sandbox, broker) -> None:
    deadline = time.monotonic() + 5
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = sandbox_processes()
    assert not left, describe(left)
    after, _, _ = run(sandbox, broker, "return 'def add(a, b):\\n    return a + b'")
    assert after.status == "ok" and "return a + b" in after.output


def test_verify_in_an_endless_loop_stops_at_the_cap(sandbox, broker):
    record, _, wall = run(sandbox, broker, "while True:\n    verify('def add(a, b): return 0')")
    assert record.status == "error" and record.error_type == "VerifyLimitExceeded"
    assert record.verify_calls == 33 and wall < TIMEOUT_S + 30
    host_is_clean(sandbox, broker)


def test_verify_in_an_endless_loop_that_swallows_the_cap_ends_at_the_run_timeout(sandbox, broker):
    body = ("while True:\n"
            "    try:\n"
            "        verify('def add(a, b): return 0')\n"
            "    except Exception:\n"
            "        pass")
    record, _, wall = run(sandbox, broker, body, timeout_s=3.0, max_verify_calls=4)
    assert record.status == "timeout"
    assert wall < 3.0 + 15  # the nested checks' time counted: the run did not outlive its clock
    host_is_clean(sandbox, broker)


def test_200_threads_calling_verify_are_bounded_by_the_process_limit_and_the_cap(sandbox, broker):
    """RLIMIT_NPROC (Limits.processes, 64) stops the thread storm first; the threads that do
    start get 32 checks between them and `VerifyLimitExceeded` after that."""
    body = ("import threading\n"
            "threading.stack_size(1 << 18)  # 200 default stacks would pass the memory limit\n"
            "errors = []\n"
            "def check():\n"
            "    try:\n"
            "        verify('def add(a, b): return a + b')\n"
            "    except Exception as err:\n"
            "        errors.append(type(err).__name__)\n"
            "threads = []\n"
            "for _ in range(200):\n"
            "    t = threading.Thread(target=check)\n"
            "    try:\n"
            "        t.start()\n"
            "    except RuntimeError:\n"
            "        break\n"
            "    threads.append(t)\n"
            "[t.join() for t in threads]\n"
            "return '%d %d %s' % (len(threads), len(errors), ','.join(sorted(set(errors))))")
    record, _, wall = run(sandbox, broker, body, timeout_s=60.0, max_verify_calls=32)
    assert record.status == "ok", (record.error_type, record.error_message)
    started, refused, kinds = record.output.split(" ") + [""] * (3 - len(record.output.split(" ")))
    assert 32 < int(started) < 200
    assert int(refused) == int(started) - 32 and kinds == "VerifyLimitExceeded"
    assert record.verify_calls == int(started) and wall < 60
    host_is_clean(sandbox, broker)


def test_100_threads_calling_llm_never_pass_the_call_cap(sandbox, broker):
    body = ("import threading\n"
            "threading.stack_size(1 << 18)\n"
            "answers = []\n"
            "def ask(i):\n"
            "    try:\n"
            "        answers.append(llm('thread %d' % i))\n"
            "    except Exception:\n"
            "        pass\n"
            "threads = [threading.Thread(target=ask, args=(i,)) for i in range(100)]\n"
            "[t.start() for t in threads]\n"
            "[t.join() for t in threads]\n"
            "return str(len(answers))")
    record, meter, _ = run(sandbox, broker, body, budget=Budget(calls=20, tokens=10**7))
    assert meter.calls <= 20 and len([c for c in record.calls if c.error is None]) <= 20
    assert record.status in ("ok", "budget_exhausted")
    host_is_clean(sandbox, broker)


def test_llm_in_an_endless_loop_stops_at_the_budget(sandbox, broker):
    record, meter, _ = run(sandbox, broker, "while True:\n    llm('again')",
                           budget=Budget(calls=10, tokens=10**7))
    assert record.status == "budget_exhausted" and meter.calls == 10
    host_is_clean(sandbox, broker)


def test_raw_writes_to_every_descriptor_forge_nothing(sandbox, broker):
    body = ("import os\n"
            "forged = b'{\"kind\": \"result\", \"output\": \"FORGED\"}\\n'\n"
            "for fd in range(0, 256):\n"
            "    for data in (b'garbage\\n', forged, b'x' * (64 << 20)):\n"
            "        try:\n"
            "            os.write(fd, data)\n"
            "        except OSError:\n"
            "            pass\n"
            "return 'def add(a, b):\\n    return a + b'")
    record, _, wall = run(sandbox, broker, body, timeout_s=20.0)
    assert record.status == "output_limit"  # stdout got more than its cap: killed, no output
    assert "FORGED" not in (record.output or "")
    assert wall < 20 + 15
    host_is_clean(sandbox, broker)


def test_a_workflow_that_never_returns_and_ignores_signals_is_ended(sandbox, broker):
    body = ("import signal\n"
            "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):\n"
            "    signal.signal(s, signal.SIG_IGN)\n"
            "while True:\n"
            "    pass")
    record, _, wall = run(sandbox, broker, body, timeout_s=2.0)
    assert record.status == "timeout" and wall < 2.0 + 15
    host_is_clean(sandbox, broker)


def test_a_100_mib_answer_is_refused_not_carried(sandbox, broker):
    record, _, _ = run(sandbox, broker, "return 'x' * (100 << 20)", timeout_s=20.0)
    assert record.status == "error" and "exceeds" in record.error_message
    assert record.output is None or len(record.output) < (1 << 20)
    host_is_clean(sandbox, broker)


def test_verify_of_code_that_calls_verify_gets_no_channel(sandbox, broker):
    body = ("inner = 'import flowmend_rpc\\nflowmend_rpc.call(\"verify\", {\"code\": \"x\"})\\n'\n"
            "check = verify(inner + 'def add(a, b):\\n    return a + b')\n"
            "return 'passed' if check.passed else 'refused'")
    record, _, _ = run(sandbox, broker, body)
    assert record.status == "ok" and record.output == "refused" and record.verify_calls == 1
    host_is_clean(sandbox, broker)


def test_a_process_left_to_write_to_the_rpc_descriptors_after_the_run_is_ended(sandbox, broker):
    body = ("import os, subprocess, sys\n"
            "script = ('import os, time\\n'\n"
            "          'time.sleep(1)\\n'\n"
            "          'for fd in range(3, 64):\\n'\n"
            "          '    try: os.write(fd, b\"{\\\\\"id\\\\\": 1, \\\\\"method\\\\\": \\\\\"llm\\\\\"}\\\\n\")\\n'\n"
            "          '    except OSError: pass\\n')\n"
            "subprocess.Popen([sys.executable, '-c', script], start_new_session=True,\n"
            "                 pass_fds=tuple(range(3, 32)) if False else ())\n"
            "return 'def add(a, b):\\n    return a + b'")
    record, meter, _ = run(sandbox, broker, body)
    assert record.status == "ok"
    calls = meter.calls
    time.sleep(2)  # the writer would have woken by now
    assert meter.calls == calls  # nothing reached the model after the run
    host_is_clean(sandbox, broker)
