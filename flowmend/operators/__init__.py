"""The built-in typed operators, one module each; importing this package registers them.

The engine loads this package by name through the registry (`flowmend.engine._operator`), which
checks that `__all__` and the registered operators agree.
"""

from flowmend.operators.add_step import AddStep
from flowmend.operators.append_instruction import AppendInstruction
from flowmend.operators.branch_on_check import BranchOnCheck
from flowmend.operators.insert_verify_step import InsertVerifyStep
from flowmend.operators.remove_step import RemoveStep
from flowmend.operators.reorder_steps import ReorderSteps
from flowmend.operators.rewrite_prompt_literal import RewritePromptLiteral
from flowmend.operators.sample_and_select import SampleAndSelect
from flowmend.operators.set_call_params import SetCallParams
from flowmend.operators.swap_model import SwapModel
from flowmend.operators.wrap_in_retry import WrapInRetry

__all__ = [
    "AddStep",
    "AppendInstruction",
    "BranchOnCheck",
    "InsertVerifyStep",
    "RemoveStep",
    "ReorderSteps",
    "RewritePromptLiteral",
    "SampleAndSelect",
    "SetCallParams",
    "SwapModel",
    "WrapInRetry",
]


def _check_drift() -> None:
    """Registering and `__all__` must agree: a module that registers an operator nobody exports,
    or an export that never registered, fails here, at import."""
    import sys

    from flowmend.engine._operator import RegistryError, drift

    problems = drift(sys.modules[__name__])
    if problems:
        raise RegistryError("operator registry drift: " + "; ".join(problems))


_check_drift()
