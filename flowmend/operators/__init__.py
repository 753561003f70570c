"""The built-in typed operators, one module each; importing a module registers its operator.

The engine loads them through the registry (`flowmend.engine._operator.load_builtins`), which
calls `load()` and checks that `__all__` and the registered operators agree. Importing this
package alone imports nothing heavy, so the `flowmend` command starts fast; the classes are
loaded on first access (`from flowmend.operators import WrapInRetry` works as usual).
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

__all__ = sorted(_MODULES)


def load() -> None:
    """Import every operator module, which registers its operator."""
    for module in _MODULES.values():
        importlib.import_module(f"{__name__}.{module}")


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
