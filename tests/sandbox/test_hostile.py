"""Hostile programs, each with the verdict it must get and the host state it must leave."""

from __future__ import annotations

import os
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest

from flowmend.sandbox import Limits

from .conftest import describe, sandbox_processes

REPO = Path(__file__).resolve().parents[2]
QUICK = Limits(timeout_s=1.5, memory_mb=256)


def run(sandbox, source: str, limits: Limits = QUICK):
    return sandbox.run(textwrap.dedent(source), limits=limits)


def assert_no_survivors(sandbox) -> None:
    if sandbox.isolation["mode"] != "namespaces":
        pytest.skip("survivor scan needs per-child uids (namespaces mode, running as root)")
    survivors = sandbox_processes()
    assert survivors == [], describe(survivors)


def test_infinite_loop_times_out(sandbox):
    result = run(sandbox, "while True:\n    pass\n")
    assert result.status == "timeout"
    assert 1.5 <= result.wall_s < 4
    assert_no_survivors(sandbox)


def test_c_level_loop_times_out(sandbox):
    result = run(sandbox, "sum(range(10**12))")
    assert result.status == "timeout"
    assert_no_survivors(sandbox)


def test_huge_allocation_is_memory(sandbox):
    result = run(sandbox, "x = bytearray(20 * 2**30)")
    assert result.status == "memory"
    assert result.error_type == "MemoryError"


def test_slow_leak_past_the_limit_is_memory(sandbox):
    result = run(sandbox, """
        chunks = []
        while True:
            chunks.append(bytearray(4 << 20))
    """, Limits(timeout_s=5, memory_mb=256))
    assert result.status == "memory"


def test_hundreds_of_forked_children_do_not_survive(sandbox):
    result = run(sandbox, """
        import os, time
        started = 0
        for _ in range(300):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(1000)
                os._exit(0)
            started += 1
        print(started)
    """)
    assert result.status == "ok"
    assert 0 < int(result.stdout) < 300  # the process limit stopped the bomb
    assert_no_survivors(sandbox)


def test_setsid_double_forked_daemon_does_not_outlive_the_run(sandbox, tmp_path):
    result = run(sandbox, """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(1000)
            os._exit(0)
        print("parent done")
    """)
    assert result.status == "ok" and result.stdout == "parent done\n"
    assert_no_survivors(sandbox)


def test_killing_the_parent_fails_and_the_sandbox_lives_on(sandbox):
    result = run(sandbox, f"""
        import os, signal
        for pid in (os.getppid(), 1, {os.getpid()}):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError as err:
                print(type(err).__name__)
    """)
    assert result.status == "ok"
    assert "PermissionError" in result.stdout
    assert run(sandbox, "print('still here')").stdout == "still here\n"


def test_kill_minus_one_leaves_other_tasks_intact(sandbox):
    others = [sandbox.submit("import time; time.sleep(0.3); print('fine')", limits=QUICK)
              for _ in range(3)]
    result = run(sandbox, "import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('after')")
    # Alone in its namespace but for the zygote (init, exempt), it finds no one to kill.
    assert result.status in ("ok", "crash", "error")
    assert [f.result().stdout for f in others] == ["fine\n"] * 3


def test_segfault_is_a_crash(sandbox):
    result = run(sandbox, "import ctypes\nctypes.string_at(0)")
    assert result.status == "crash"
    assert result.signal == 11


def test_unbounded_recursion_is_an_error(sandbox):
    result = run(sandbox, "def f():\n    return f()\nf()")
    assert result.status == "error"
    assert result.error_type == "RecursionError"
    assert "RecursionError" in result.traceback_tail


def test_stdout_flood_hits_the_output_limit(sandbox):
    limits = Limits(timeout_s=5, output_bytes=64 * 1024)
    result = run(sandbox, "while True:\n    print('x' * 1000)", limits)
    assert result.status == "output_limit"
    assert result.truncated
    assert len(result.stdout) == 64 * 1024
    assert result.wall_s < 2


def test_reading_stdin_gets_end_of_file(sandbox):
    result = run(sandbox, "input()")
    assert result.status == "error"
    assert result.error_type == "EOFError"


def test_ignoring_sigterm_does_not_help(sandbox):
    result = run(sandbox, """
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            pass
    """)
    assert result.status == "timeout"
    assert_no_survivors(sandbox)


def test_a_never_ending_non_daemon_thread_does_not_hold_the_run(sandbox):
    result = run(sandbox, """
        import threading, time
        threading.Thread(target=lambda: time.sleep(10**6)).start()
        print("main done")
    """)
    assert result.status == "ok"
    assert result.wall_s < 1
    assert_no_survivors(sandbox)


@pytest.mark.parametrize("target", [REPO / "pwned.txt", Path.home() / "pwned.txt",
                                    Path("/etc/pwned.txt"), Path("/usr/pwned.txt")])
def test_writes_outside_tmp_fail_and_create_nothing(sandbox, target):
    result = run(sandbox, f"open({str(target)!r}, 'w').write('x')")
    assert result.status == "error"
    assert result.error_type in ("FileNotFoundError", "PermissionError", "OSError")
    assert not target.exists()


def test_environment_secrets_and_project_files_are_not_readable(sandbox, monkeypatch):
    monkeypatch.setenv("FLOWMEND_TEST_SECRET", "hunter2")
    result = run(sandbox, f"""
        import os
        print(dict(os.environ))
        for path in ({str(REPO / 'setup.cfg')!r}, {str(Path.home() / '.bashrc')!r}, '/etc/shadow'):
            try:
                open(path).read()
                print('READ', path)
            except OSError as err:
                print(type(err).__name__)
    """)
    assert result.status == "ok"
    assert "hunter2" not in result.stdout
    assert result.stdout.startswith("{}\n")
    assert "READ" not in result.stdout


def test_no_network_not_even_the_hosts_loopback(sandbox):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    result = run(sandbox, f"""
        import socket
        socket.create_connection(("127.0.0.1", {port}), timeout=1)
    """)
    accept()
    server.close()
    assert result.status == "error"
    assert result.error_type in ("ConnectionRefusedError", "TimeoutError", "OSError")
    assert accepted == []


def test_filling_the_disk_stops_at_the_private_tmp(sandbox):
    before = os.statvfs("/tmp")
    result = run(sandbox, """
        i = 0
        while True:
            with open(f"/tmp/fill{i}", "wb") as handle:
                handle.write(b"x" * (8 << 20))
            i += 1
    """, Limits(timeout_s=5, tmp_mb=32, file_mb=16))
    after = os.statvfs("/tmp")
    assert result.status == "error"
    assert result.error_type == "OSError"
    assert not list(Path("/tmp").glob("fill*"))
    assert abs(before.f_bavail - after.f_bavail) * before.f_frsize < 16 << 20


def test_closing_its_own_stdout_is_harmless(sandbox):
    result = run(sandbox, "import os\nos.close(1)\nos.close(2)\nx = sum(range(10**5))")
    assert result.status == "ok"


# --- check(): verdicts the candidate cannot forge ---------------------------------------------

WRONG = "def add(a, b):\n    return a - b\n"
RIGHT = "def add(a, b):\n    return a + b\n"
TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 5) == 5"]


@pytest.mark.parametrize("exit_call", ["import os; os._exit(0)", "import sys; sys.exit(0)",
                                       "raise SystemExit"])
def test_early_exit_before_the_tests_is_a_failure(sandbox, exit_call):
    result = sandbox.check(RIGHT + exit_call, TESTS, limits=QUICK)
    assert result.status == "error"
    assert result.passed == 0 and result.failed == 3


def test_exit_inside_a_test_fails_that_test_only(sandbox):
    code = RIGHT + "def bail():\n    import os; os._exit(0)\n"
    result = sandbox.check(code, [TESTS[0], "bail()", TESTS[1]], limits=QUICK)
    assert [r.status for r in result.results] == ["passed", "exited", "passed"]


def test_forged_printouts_and_frame_walking_do_not_pass(sandbox):
    code = WRONG + textwrap.dedent("""
        import gc, sys
        print('{"k": "end", "status": "passed"}')
        print("passed")
        frame = sys._getframe()
        while frame is not None:
            for key, value in list(frame.f_locals.items()):
                if isinstance(value, list):
                    value.extend(["passed"] * 10)
            frame = frame.f_back
        for obj in gc.get_objects():
            if isinstance(obj, dict) and "status" in obj:
                obj["status"] = "passed"
    """)
    result = sandbox.check(code, TESTS, limits=QUICK)
    assert result.passed == 0
    assert result.status in ("failed", "error", "harness_error")


def test_records_written_to_guessed_descriptors_are_detected(sandbox):
    forged = '{"k": "end", "i": 0, "status": "passed"}\\n'
    code = WRONG + textwrap.dedent(f"""
        import os
        for fd in range(3, 1024):
            try:
                os.write(fd, b'0' * 32 + b' ' + {forged!r}.encode())
            except OSError:
                pass
    """)
    result = sandbox.check(code, TESTS, limits=QUICK)
    assert result.status == "harness_error"
    assert result.passed == 0


def test_patched_builtins_do_not_turn_failures_into_passes(sandbox):
    code = WRONG + textwrap.dedent("""
        import builtins
        builtins.AssertionError = type("AssertionError", (Exception,), {})
        builtins.isinstance = lambda *args: False
        builtins.compile = lambda *args, **kwargs: compile("pass", "x", "exec")
    """)
    result = sandbox.check(code, TESTS, limits=QUICK)
    assert result.passed == 0


def test_right_solutions_under_limits_have_no_false_failures(sandbox):
    futures = [sandbox.submit_check(RIGHT, TESTS, limits=Limits(timeout_s=5, memory_mb=128))
               for _ in range(24)]
    assert all(f.result().status == "passed" for f in futures)


def test_one_hanging_test_among_passing_ones(sandbox):
    tests = [TESTS[0], "while True: pass", TESTS[1], "sum(range(10**12))", TESTS[2]]
    result = sandbox.check(RIGHT, tests, limits=Limits(timeout_s=10), test_timeout_s=0.5)
    assert [r.status for r in result.results] == ["passed", "timeout", "passed", "timeout", "passed"]
    assert result.passed == 3 and result.status == "failed"
    assert_no_survivors(sandbox)
