"""The weaker isolation modes: a user namespace (no root), and rlimits only (no bubblewrap)."""

from __future__ import annotations

import shutil

import pytest

from flowmend.sandbox import Limits, Sandbox


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_user_namespace_mode_isolates_and_recovers_from_a_killed_zygote():
    with Sandbox(workers=1, max_inflight=2, isolation="userns") as sb:
        wrote = sb.run("open('/tmp/left-behind', 'w').write('x')\nprint(open('/etc/hostname', 'a'))")
        assert wrote.isolation["mode"] == "userns" and wrote.isolation["warning"] is None
        assert wrote.status == "error"  # /etc is not there
        assert sb.run("import os\nprint(os.path.exists('/tmp/left-behind'))").stdout == "False\n"
        assert sb.run("while True:\n    pass", limits=Limits(timeout_s=1)).status == "timeout"
        # Children share the zygote's uid here, so a candidate can kill it: a crash, then a
        # fresh zygote for the next run.
        killed = sb.run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
        assert killed.status == "crash"
        assert sb.run("print('next')").stdout == "next\n"


def test_the_fallback_without_namespaces_warns_in_every_verdict():
    with Sandbox(workers=1, max_inflight=1, isolation="rlimits") as sb:
        result = sb.run("print(6 * 7)")
    assert result.status == "ok" and result.stdout == "42\n"
    assert result.isolation["mode"] == "rlimits"
    assert "WARNING" in result.isolation["warning"]
