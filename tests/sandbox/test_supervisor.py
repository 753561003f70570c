"""The supervisor: a worker killed mid-task yields a verdict, a fresh worker, and no lost task."""

from __future__ import annotations

import os
import signal
import time

import pytest

from flowmend.sandbox import Limits, Sandbox

from .conftest import descends_from_us

MARK = "flowmend-supervisor-test"


def _zygote_pids() -> set[int]:
    """Host pids of our own zygote interpreters (root, command line naming zygote.py)."""
    pids = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    command = handle.read()
                # The mother zygote only forks zygotes, each the init (pid 1) of its namespace.
                is_zygote = (b"zygote.py" in command and b"bwrap" not in command.split(b"\0")[0]
                             and (not command.endswith(b"mother\0")
                                  or _is_namespace_init(int(name))))
                if is_zygote and os.stat(f"/proc/{name}").st_uid == 0 and descends_from_us(int(name)):
                    pids.add(int(name))
            except OSError:
                pass
    return pids


def _is_namespace_init(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("NSpid:"):
                return line.split()[-1] == "1"
    return False


def _children_of(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(name))
            except (OSError, IndexError):
                pass
    return found


def _busy_zygote(before: set[int], timeout_s: float = 10.0) -> int:
    """The zygote (started by our sandbox) that has a child running right now."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in _zygote_pids() - before:
            if _children_of(pid):
                return pid
        time.sleep(0.02)
    raise AssertionError("no busy zygote found")


@pytest.mark.parametrize("victim", ["zygote", "child"])
def test_a_worker_killed_mid_task_gets_a_verdict_and_a_successor(victim):
    before = _zygote_pids()
    with Sandbox(workers=2, max_inflight=4) as sb:
        slow = sb.submit(f"import time\nprint('{MARK}', flush=True)\ntime.sleep(30)",
                         limits=Limits(timeout_s=20))
        zygote = _busy_zygote(before)
        others = [sb.submit(f"print({i} * {i})", limits=Limits(timeout_s=10)) for i in range(6)]
        target = zygote if victim == "zygote" else _children_of(zygote)[0]
        os.kill(target, signal.SIGKILL)
        result = slow.result(timeout=15)
        assert result.status == "crash", result
        assert result.wall_s < 10
        assert [f.result(timeout=15).stdout for f in others] == [f"{i * i}\n" for i in range(6)], [f.result() for f in others][:2]
        after = [sb.submit("print('fresh')") for _ in range(4)]
        assert [f.result(timeout=15).stdout for f in after] == ["fresh\n"] * 4
        # A dead zygote is replaced; one whose child was killed carries on.
        assert (zygote in _zygote_pids()) == (victim == "child")


def test_timeouts_do_not_delay_other_tasks():
    with Sandbox(workers=2, max_inflight=8) as sb:
        loops = [sb.submit("while True:\n    pass", limits=Limits(timeout_s=6)) for _ in range(4)]
        time.sleep(1.0)  # past the quantum: the loops have given their CPU slots back
        quick = [sb.submit("print('quick')", limits=Limits(timeout_s=6)) for _ in range(10)]
        assert [f.result().stdout for f in quick] == ["quick\n"] * 10
        assert not any(f.done() for f in loops)  # the quick ones did not wait for the loops
        assert [f.result().status for f in loops] == ["timeout"] * 4


def test_a_closed_sandbox_refuses_new_work():
    sb = Sandbox(workers=1, max_inflight=1)
    assert sb.run("print(1)").stdout == "1\n"
    sb.close()
    with pytest.raises(RuntimeError):
        sb.submit("print(2)")
