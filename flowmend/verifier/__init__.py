"""Deployable feedback: visible checks, structured verdicts, scores, and gamma/kappa.

Nothing here reads ground truth: the verifier sees a `Task` (prompt, entry point, visible
checks), the workflow's output and its trace, and runs code only through a `Sandbox`.
"""

from flowmend import _api

_api.public_api(__name__, globals(), {
    "_feedback": ("CheckCache", "CheckOutcome", "Cost", "Feedback", "SyntaxProblem", "feedback",
                  "instrument_check"),
    "_measure": ("Estimate", "Iteration", "Scored", "gamma", "kappa", "score_ties"),
    "_score": ("ScoreWeights", "score"),
    "_visible": ("Example", "docstring_examples", "visible_checks_from_docstring"),
    "runtime_helpers": ("CHECK_KINDS", "Check", "extract_code"),
})
