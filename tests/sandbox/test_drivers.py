"""Jobs that RPC handlers ask for (a workflow's `verify`): never behind the runs that wait for
them, and bounded, however many threads of a workflow ask at once."""

from __future__ import annotations

import threading

from flowmend.sandbox import Limits, Sandbox

ASK_ONCE = """
import flowmend_rpc
try:
    print(flowmend_rpc.call("verify", None))
except flowmend_rpc.RPCError as err:
    print("refused:", err)
"""

ASK_FROM_200_THREADS = """
import threading, flowmend_rpc
threading.stack_size(256 * 1024)
answers = []
def ask():
    try:
        answers.append(flowmend_rpc.call("verify", None))
    except flowmend_rpc.RPCError as err:
        answers.append(str(err))
threads = [threading.Thread(target=ask) for _ in range(200)]
for t in threads: t.start()
for t in threads: t.join()
print(len(answers), answers.count("passed"), sorted(set(answers)))
"""


def _drivers() -> int:
    return sum(t.name.startswith("flowmend-sandbox-") and not t.name.startswith(
        "flowmend-sandbox-spawner") for t in threading.enumerate())


def test_200_threads_asking_for_a_check_start_at_most_max_nested_runs():
    peak = [0]
    lock = threading.Lock()
    with Sandbox(workers=1, max_inflight=2, max_nested=3) as sb:
        def verify(method, payload):
            with lock:
                peak[0] = max(peak[0], _drivers())
            verdict = sb.check("def f():\n    return 1\n",
                               ["import time\ntime.sleep(0.02)\nassert f() == 1"],
                               limits=Limits(timeout_s=10))
            with lock:
                peak[0] = max(peak[0], _drivers())
            return verdict.status

        result = sb.run(ASK_FROM_200_THREADS, rpc=verify,
                        limits=Limits(timeout_s=120, processes=400, memory_mb=4096))
        started = _drivers()
    assert result.status == "ok", result
    answered, passed, kinds = result.stdout.split(" ", 2)
    assert answered == "200"
    assert int(passed) >= 64  # the first 64 calls in flight are all taken
    assert kinds.strip() in ("['passed']", "['passed', 'too many RPC calls in flight']")
    assert peak[0] <= 2 + 3 and started <= 2 + 3, (peak, started)


def test_nested_jobs_wait_only_behind_their_own_depth_and_too_deep_is_refused():
    # One driver per lane: a run at each depth holds its lane's only driver while it waits on
    # the next depth, which must still run; past depth 3 the handler's request is refused.
    with Sandbox(workers=1, max_inflight=1, max_nested=1) as sb:
        def verify(method, payload):
            return sb.run(ASK_ONCE, rpc=verify, limits=Limits(timeout_s=60)).stdout.strip()

        result = sb.run(ASK_ONCE, rpc=verify, limits=Limits(timeout_s=120))
    assert result.status == "ok", result
    assert result.stdout == "refused: SandboxError: a sandbox job nested 4 deep (at most 3)\n"
