"""Deployable feedback: visible checks, structured verdicts, scores, and gamma/kappa.

Nothing here reads ground truth: the verifier sees a `Task` (prompt, entry point, visible
checks), the workflow's output and its trace, and runs code only through a `Sandbox`.
"""

from flowmend.verifier._feedback import (
    CheckCache,
    CheckOutcome,
    Cost,
    Feedback,
    SyntaxProblem,
    feedback,
    instrument_check,
)
from flowmend.verifier._measure import Estimate, Iteration, Scored, gamma, kappa
from flowmend.verifier._score import ScoreWeights, score
from flowmend.verifier._visible import Example, docstring_examples, visible_checks_from_docstring
from flowmend.verifier.runtime_helpers import CHECK_KINDS, Check, extract_code

__all__ = [
    "CHECK_KINDS",
    "Check",
    "CheckCache",
    "CheckOutcome",
    "Cost",
    "Estimate",
    "Example",
    "Feedback",
    "Iteration",
    "ScoreWeights",
    "Scored",
    "SyntaxProblem",
    "docstring_examples",
    "extract_code",
    "feedback",
    "gamma",
    "instrument_check",
    "kappa",
    "score",
    "visible_checks_from_docstring",
]
