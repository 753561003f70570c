"""The built-in typed operators, one module each; importing this package registers them.

The engine loads this package by name through the registry (`flowmend.engine._operator`), which
checks that `__all__` and the registered operators agree.
"""

from flowmend.operators.append_instruction import AppendInstruction
from flowmend.operators.rewrite_prompt_literal import RewritePromptLiteral
from flowmend.operators.set_call_params import SetCallParams
from flowmend.operators.swap_model import SwapModel

__all__ = [
    "AppendInstruction",
    "RewritePromptLiteral",
    "SetCallParams",
    "SwapModel",
]
