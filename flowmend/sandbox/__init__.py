"""Isolated, supervised execution of untrusted code: workflows and model-written programs.

    with Sandbox() as sb:
        result = sb.run(source, limits=Limits(timeout_s=5))          # ExecResult
        checked = sb.check(code, ["assert f(1) == 2"])                # CheckResult

Inside, `import flowmend_rpc; flowmend_rpc.call(method, payload)` reaches the `rpc` handler the
caller passed; the handler's time counts against the run's timeout except where it is inside
`with model_wait():`. See docs/sandbox.md for what is isolated and how verdicts are decided.
"""

from __future__ import annotations

from flowmend import _api

# Loaded on first use, so that `flowmend --help` and the CLI's verb registration stay fast.
_api.public_api(__name__, globals(), {
    "_isolation": ("describe_isolation",),
    "_run": ("model_wait",),
    "_supervisor": ("Sandbox",),
    "_types": ("STATUSES", "TEST_STATUSES", "CheckResult", "ExecResult", "Limits", "RpcHandler",
               "SandboxError", "TestResult"),
})
