"""Isolated, supervised execution of untrusted code: workflows and model-written programs.

    with Sandbox() as sb:
        result = sb.run(source, limits=Limits(timeout_s=5))          # ExecResult
        checked = sb.check(code, ["assert f(1) == 2"])                # CheckResult

Inside, `import flowmend_rpc; flowmend_rpc.call(method, payload)` reaches the `rpc` handler the
caller passed; the handler's time counts against the run's timeout except where it is inside
`with model_wait():`. See docs/sandbox.md for what is isolated and how verdicts are decided.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "STATUSES", "TEST_STATUSES", "CheckResult", "ExecResult", "Limits", "RpcHandler", "Sandbox",
    "SandboxError", "TestResult", "model_wait",
]

# Loaded on first use, so that `flowmend --help` and the CLI's verb registration stay fast.
_HOME = {
    "RpcHandler": "_types", "Sandbox": "_supervisor", "SandboxError": "_types",
    "STATUSES": "_types", "TEST_STATUSES": "_types", "CheckResult": "_types",
    "ExecResult": "_types", "Limits": "_types", "TestResult": "_types", "model_wait": "_run",
}

if TYPE_CHECKING:
    from flowmend.sandbox._run import model_wait
    from flowmend.sandbox._supervisor import Sandbox
    from flowmend.sandbox._types import (
        STATUSES, TEST_STATUSES, CheckResult, ExecResult, Limits, RpcHandler, SandboxError,
        TestResult)


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(importlib.import_module(f"flowmend.sandbox.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flowmend.sandbox' has no attribute {name!r}")
