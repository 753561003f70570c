"""Verdicts, decided in the parent: what one run saw (records and the zygote's exit report)
becomes an ExecResult, and the attempts of a check become one CheckResult."""

from __future__ import annotations

import signal
from dataclasses import replace

from flowmend.sandbox._job import Attempt
from flowmend.sandbox._types import CheckResult, ExecResult, TestResult


def exec_result(att: Attempt, isolation: dict) -> ExecResult:
    report = att.report or {}
    exit_code = report.get("exit_code")
    sig = report.get("signal")
    kinds = {r.get("k"): r for r in att.records}
    error_type = message = tail = None
    if att.aborted:
        status, error_type = "harness_error", "SandboxClosed"
        message = "the sandbox closed on an error while this ran"
    elif att.tampered:
        status, error_type, message = "harness_error", "Tampering", att.tampered
    elif att.status:
        status = att.status
        if att.zygote_lost:
            error_type, message = "ZygoteLost", "the sandbox zygote died (the candidate killed it?)"
    elif sig is not None:
        status = "timeout" if sig == signal.SIGXCPU else "crash"
        error_type = "Signal"
        message = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
    elif "exc" in kinds or "load_error" in kinds:
        rec = kinds.get("exc") or kinds.get("load_error")
        error_type, message, tail = rec.get("type"), rec.get("msg"), rec.get("tb")
        status = "memory" if error_type == "MemoryError" else "error"
    elif exit_code not in (None, 0):
        status, error_type = "error", "SystemExit"
        message = f"exit code {exit_code}"
    elif exit_code == 0:
        status = "ok"
    else:
        status = "harness_error"
        error_type, message = "NoReport", "the zygote gave no exit report"
    if status == "crash" and not message:
        message = "the process died"
    return ExecResult(
        status=status, exit_code=exit_code, signal=sig, stdout=_decode(att.stdout),
        stderr=_decode(att.stderr), truncated=att.truncated, wall_s=round(att.wall_s, 4),
        rpc_wait_s=round(att.rpc_wait_s, 4), cpu_s=report.get("cpu_s"), isolation=isolation,
        error_type=error_type, error_message=message, traceback_tail=tail,
    )


def harness_error(message: str, isolation: dict) -> ExecResult:
    return ExecResult(status="harness_error", isolation=isolation, error_type="HarnessError",
                      error_message=message)


def all_failed(run: ExecResult, total: int, status: str) -> CheckResult:
    results = tuple(TestResult(i, "not_run", run.error_type, run.error_message)
                    for i in range(total))
    return CheckResult(status, 0, total, total, results, run)


class CheckVerdict:
    """The verdict on one check, built attempt by attempt.

    A child that dies in the middle of a test (a timeout, a crash, an exit) fails that test;
    the tests after it run again in a fresh child, from the next one on, on what is left of the
    time budget (`start` and `budget_s` say where and how long).
    """

    def __init__(self, tests: int, budget_s: float, output_bytes: int):
        self.total = tests
        self.start = 0
        self.budget_s = budget_s
        self._output_bytes = output_bytes
        self._outcome: dict[int, TestResult] = {}
        self._wall = self._rpc_wait = 0.0
        self._stdout, self._stderr = bytearray(), bytearray()
        self._truncated = False
        self._last: ExecResult | None = None
        self._final: CheckResult | None = None

    def add(self, attempt: Attempt, run: ExecResult) -> bool:
        """Take one attempt and its ExecResult; True when the remaining tests should run again
        from `start`."""
        total = self.total
        self._last = run
        self._wall += attempt.wall_s
        self._rpc_wait += attempt.rpc_wait_s
        self.budget_s -= attempt.wall_s - attempt.rpc_wait_s
        self._stdout += attempt.stdout
        self._stderr += attempt.stderr
        self._truncated |= attempt.truncated
        if attempt.tampered:
            self._final = all_failed(run, total, "harness_error")
            return False
        kinds = [r.get("k") for r in attempt.records]
        if "loaded" not in kinds:
            self._final = _load_failure(run, total)
            return False
        current = None
        for record in attempt.records:
            if record.get("k") == "begin":
                current = record.get("i")
            elif record.get("k") == "end":
                index = record.get("i")
                self._outcome[index] = TestResult(index, record.get("status", "error"),
                                                  record.get("type") or None,
                                                  record.get("msg") or None)
                current = None
        if "done" in kinds:
            return False
        if current is None:  # died between tests: blame the next one
            current = max(self._outcome, default=self.start - 1) + 1
        if current >= total:
            return False
        died = run.status if run.status not in ("ok", "error") else "exited"
        self._outcome[current] = TestResult(current, died, run.error_type, run.error_message
                                            or _died_message(run))
        self.start = current + 1
        return self.start < total and self.budget_s > 0

    def result(self) -> CheckResult:
        if self._final is not None:
            return self._final
        total = self.total
        results = tuple(self._outcome.get(i) or TestResult(i, "not_run", None,
                                                           "not run: time budget spent")
                        for i in range(total))
        passed = sum(r.passed for r in results)
        cap = self._output_bytes
        run = replace(self._last, stdout=_decode(self._stdout[:cap]),
                      stderr=_decode(self._stderr[:cap]), truncated=self._truncated,
                      wall_s=round(self._wall, 4), rpc_wait_s=round(self._rpc_wait, 4))
        status = "passed" if passed == total else "failed"
        return CheckResult(status, passed, total - passed, total, results, run)


def _decode(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


def _died_message(run: ExecResult) -> str:
    if run.status == "timeout":
        return "test timed out"
    if run.signal:
        return f"killed by signal {run.signal}"
    return f"the process exited (code {run.exit_code}) in the middle of this test"


def _load_failure(run: ExecResult, total: int) -> CheckResult:
    status = run.status
    if status == "ok":  # exited cleanly before its tests ran: os._exit(0) and the like
        status = "error"
        run = replace(run, status="error", error_type="EarlyExit", error_message=(
            f"the program exited (code {run.exit_code}) before its tests ran"))
    return all_failed(run, total, status)
