"""The built-in typed operators, one module each.

The engine loads them as a library (`flowmend.engine.load_library(["builtin"])`), which
imports every module in `MODULES`, collects the operators each defines, and checks that they
and `__all__` agree. Importing this package alone imports nothing heavy, so the `flowmend`
command starts fast; the classes are loaded on first access (`from flowmend.operators import
WrapInRetry` works as usual).
"""

from __future__ import annotations

from flowmend import _api

# The built-in operator modules, in the order the library loader imports them.
MODULES = (
    "add_step", "append_instruction", "branch_on_check", "insert_verify_step", "remove_step",
    "reorder_steps", "rewrite_prompt_literal", "sample_and_select", "set_call_params",
    "swap_model", "wrap_in_retry",
)

_api.public_api(__name__, globals(), {
    _api.HERE: ("MODULES",),
    "add_step": ("AddStep",),
    "append_instruction": ("AppendInstruction",),
    "branch_on_check": ("BranchOnCheck",),
    "insert_verify_step": ("InsertVerifyStep",),
    "remove_step": ("RemoveStep",),
    "reorder_steps": ("ReorderSteps",),
    "rewrite_prompt_literal": ("RewritePromptLiteral",),
    "sample_and_select": ("SampleAndSelect",),
    "set_call_params": ("SetCallParams",),
    "swap_model": ("SwapModel",),
    "wrap_in_retry": ("WrapInRetry",),
    # The gate a library passes (`flowmend ops test`): not operators, loaded on first use too.
    "_check": ("Failure", "check_library"),
})
