"""Isolated, supervised execution of untrusted code: workflows and model-written programs.

    with Sandbox() as sb:
        result = sb.run(source, limits=Limits(timeout_s=5))          # ExecResult
        checked = sb.check(code, ["assert f(1) == 2"])                # CheckResult

Inside, `import flowmend_rpc; flowmend_rpc.call(method, payload)` reaches the `rpc` handler the
caller passed. See docs/sandbox.md for what is isolated and how verdicts are decided.
"""

from flowmend.sandbox._supervisor import RpcHandler, Sandbox, SandboxError
from flowmend.sandbox._types import (
    STATUSES,
    TEST_STATUSES,
    CheckResult,
    ExecResult,
    Limits,
    TestResult,
)

__all__ = [
    "STATUSES", "TEST_STATUSES", "CheckResult", "ExecResult", "Limits", "RpcHandler", "Sandbox",
    "SandboxError", "TestResult",
]
