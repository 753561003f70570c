"""The RPC channel: sandboxed code calls a handler in the parent, which may block."""

from __future__ import annotations

import threading
import time

import pytest

from flowmend.sandbox import Limits, Sandbox, SandboxError, model_wait

CALL = """
import flowmend_rpc
answer = flowmend_rpc.call("llm", {"prompt": "hi", "n": %d})
print(answer["text"])
"""


def test_32_executions_block_in_the_handler_at_once():
    barrier = threading.Barrier(32, timeout=30)
    seen = []

    def handler(method, payload):
        seen.append(payload["n"])
        barrier.wait()  # returns only once all 32 executions are waiting here together
        return {"text": f"answer {payload['n']}"}

    with Sandbox(workers=2, max_inflight=32) as sb:
        futures = [sb.submit(CALL % i, rpc=handler, limits=Limits(timeout_s=5)) for i in range(32)]
        results = [f.result(timeout=60) for f in futures]
    assert [r.status for r in results] == ["ok"] * 32
    assert [r.stdout for r in results] == [f"answer {i}\n" for i in range(32)]
    assert sorted(seen) == list(range(32))


def test_every_driver_waiting_on_a_nested_check_is_not_a_deadlock():
    # What a workflow's `verify(code)` does: the execution's handler checks code in the same
    # sandbox. With every one of max_inflight drivers held by an execution waiting for its
    # check, the checks must still run (they used to queue behind those executions for ever).
    inflight = 4
    barrier = threading.Barrier(inflight, timeout=30)
    with Sandbox(workers=1, max_inflight=inflight) as sb:
        def verify(method, payload):
            barrier.wait()  # every driver is now held by an execution waiting here
            verdict = sb.check(f"def f():\n    return {payload['n']}\n",
                               [f"assert f() == {payload['n']}"], limits=Limits(timeout_s=5))
            return {"text": f"{payload['n']} {verdict.status}"}

        futures = [sb.submit(CALL % i, rpc=verify, limits=Limits(timeout_s=5))
                   for i in range(2 * inflight)]
        results = [f.result(timeout=120) for f in futures]
    assert [r.stdout for r in results] == [f"{i} passed\n" for i in range(2 * inflight)]


def test_waiting_for_the_model_does_not_count_toward_the_timeout(sandbox):
    def slow(method, payload):
        with model_wait():
            time.sleep(2.0)
        return {"text": "late but fine"}

    result = sandbox.run(CALL % 0, rpc=slow, limits=Limits(timeout_s=1.0))
    assert result.status == "ok"
    assert result.stdout == "late but fine\n"
    assert result.rpc_wait_s >= 2.0
    assert result.wall_s >= 2.0


def test_the_timeout_still_holds_outside_rpc_waits(sandbox):
    def quick(method, payload):
        return {"text": "x"}

    source = CALL % 0 + "while True:\n    pass\n"
    result = sandbox.run(source, rpc=quick, limits=Limits(timeout_s=1.0))
    assert result.status == "timeout"


def test_handler_exceptions_reach_the_child_as_rpc_errors(sandbox):
    def broken(method, payload):
        raise ValueError(f"no such method {method}")

    result = sandbox.run("""
import flowmend_rpc
try:
    flowmend_rpc.call("nope", [1, 2])
except flowmend_rpc.RPCError as err:
    print("RPCError:", err)
""", rpc=broken)
    assert result.status == "ok"
    assert result.stdout == "RPCError: ValueError: no such method nope\n"


def test_concurrent_calls_from_threads_of_one_execution(sandbox):
    def echo(method, payload):
        time.sleep(0.05 * (5 - payload))
        return payload * 10

    result = sandbox.run("""
import threading, flowmend_rpc
out = {}
def ask(i):
    out[i] = flowmend_rpc.call("echo", i)
threads = [threading.Thread(target=ask, args=(i,)) for i in range(5)]
for t in threads: t.start()
for t in threads: t.join()
print(sorted(out.items()))
""", rpc=echo)
    assert result.status == "ok"
    assert result.stdout == str([(i, i * 10) for i in range(5)]) + "\n"


def test_without_a_handler_calls_fail_cleanly(sandbox):
    result = sandbox.run(CALL % 0)
    assert result.status == "error"
    assert result.error_type == "RPCError"


def test_oversized_requests_and_answers_are_refused(sandbox):
    def big(method, payload):
        return "y" * 5000

    result = sandbox.run("""
import flowmend_rpc
for size in (10, 5000):
    try:
        print(len(flowmend_rpc.call("m", "x" * size)))
    except flowmend_rpc.RPCError as err:
        print("refused:", str(err).split(" of ")[0])
""", rpc=big, limits=Limits(rpc_bytes=2048))
    assert result.status == "ok"
    assert result.stdout.splitlines() == ["refused: answer", "refused: request"]


def test_leaving_on_an_error_kills_what_runs_and_fails_what_waits():
    # An interrupted caller (Ctrl-C, SIGTERM in `flowmend bench`) must not wait on executions
    # whose handlers never answer, nor on the jobs queued behind them.
    never = threading.Event()
    stuck = threading.Barrier(3, timeout=30)

    def hang(method, payload):
        stuck.wait()
        never.wait()

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with Sandbox(workers=1, max_inflight=2) as sb:
            running = [sb.submit(CALL % i, rpc=hang, limits=Limits(timeout_s=5)) for i in (0, 1)]
            queued = sb.submit("print('never ran')")
            stuck.wait()  # both drivers are held by executions waiting in `hang`
            raise KeyboardInterrupt
    assert time.monotonic() - started < 30
    assert [(r.status, r.error_type) for r in (f.result(timeout=5) for f in running)] == [
        ("harness_error", "SandboxClosed")] * 2
    with pytest.raises(SandboxError, match="closed before this job ran"):
        queued.result(timeout=5)
    never.set()
