"""A run's clock: time an RPC handler spends on the run's behalf counts against its timeout,
and only waits for the model (`model_wait()`) do not."""

from __future__ import annotations

import time

from flowmend.sandbox import Limits, model_wait
from flowmend.sandbox._clock import RunClock

CALL = """
import flowmend_rpc
print(flowmend_rpc.call("work", {"n": 0}))
"""


def test_the_clock_stops_only_while_every_call_waits_for_the_model():
    clock = RunClock(0.0)
    clock.call(1.0, started=True)  # a call: work, the clock runs
    assert clock.used_s(2.0) == 2.0
    clock.wait(2.0, started=True)  # its handler now waits for the model
    assert not clock.running and clock.used_s(5.0) == 2.0
    clock.call(5.0, started=True)  # a second call, doing work: the clock runs again
    assert clock.running and clock.used_s(6.0) == 3.0
    clock.call(6.0, started=False)
    assert clock.wait(7.0, started=False)  # True: the clock runs again
    clock.call(7.0, started=False)
    assert clock.used_s(8.0) == 4.0 and clock.stopped_s(8.0) == 4.0


def test_time_the_handler_works_counts_toward_the_timeout(sandbox):
    def busy(method, payload):
        time.sleep(3.0)  # on the run's behalf, say a nested check
        return "done"

    started = time.monotonic()
    result = sandbox.run(CALL, rpc=busy, limits=Limits(timeout_s=1.0))
    assert result.status == "timeout"
    assert result.rpc_wait_s == 0.0
    # Killed at its deadline, while the handler was still at work, not after it answered.
    assert time.monotonic() - started < 2.9


def test_a_nested_check_counts_toward_the_timeout_of_the_run_that_asked(sandbox):
    slow_code = "import time\ntime.sleep(2.5)\ndef f():\n    return 1\n"

    def verify(method, payload):
        return sandbox.check(slow_code, ["assert f() == 1"], limits=Limits(timeout_s=10)).status

    result = sandbox.run(CALL, rpc=verify, limits=Limits(timeout_s=1.0))
    assert result.status == "timeout"
    assert result.wall_s < 2.4


def test_only_the_model_wait_inside_a_handler_is_excluded(sandbox):
    def llm(method, payload):
        with model_wait():
            time.sleep(2.0)  # the model
        time.sleep(0.3)  # the handler's own bookkeeping: counted
        return "text"

    result = sandbox.run(CALL, rpc=llm, limits=Limits(timeout_s=1.5))
    assert result.status == "ok", result
    assert result.stdout == "text\n"
    assert 1.9 <= result.rpc_wait_s < result.wall_s - 0.25


def test_work_beside_a_model_wait_still_counts(sandbox):
    # One thread waits for the model while another's call does work: the clock runs.
    source = """
import threading, flowmend_rpc
threads = [threading.Thread(target=flowmend_rpc.call, args=(m, None)) for m in ("llm", "work")]
for t in threads: t.start()
for t in threads: t.join()
"""

    def handler(method, payload):
        if method == "llm":
            with model_wait():
                time.sleep(3.0)
        else:
            time.sleep(3.0)

    result = sandbox.run(source, rpc=handler, limits=Limits(timeout_s=1.0))
    assert result.status == "timeout"

