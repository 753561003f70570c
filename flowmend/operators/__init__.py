"""The built-in typed operators, one module each.

The engine loads them as a library (`flowmend.engine.load_library(["builtin"])`), which
imports every module in `MODULES`, collects the operators each defines, and checks that they
and `__all__` agree. Importing this package alone imports nothing heavy, so the `flowmend`
command starts fast; the classes are loaded on first access (`from flowmend.operators import
WrapInRetry` works as usual).
"""

from __future__ import annotations

import importlib

_MODULES = {
    "AddStep": "add_step",
    "AppendInstruction": "append_instruction",
    "BranchOnCheck": "branch_on_check",
    "InsertVerifyStep": "insert_verify_step",
    "RemoveStep": "remove_step",
    "ReorderSteps": "reorder_steps",
    "RewritePromptLiteral": "rewrite_prompt_literal",
    "SampleAndSelect": "sample_and_select",
    "SetCallParams": "set_call_params",
    "SwapModel": "swap_model",
    "WrapInRetry": "wrap_in_retry",
}

# The built-in operator modules, in the order the library loader imports them.
MODULES = tuple(_MODULES.values())
# The gate a library passes (`flowmend ops test`): not operators, loaded on first use too.
_HELPERS = {"Failure": "_check", "check_library": "_check"}

__all__ = sorted([*_MODULES, *_HELPERS])


def __getattr__(name: str):
    module = _MODULES.get(name) or _HELPERS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
