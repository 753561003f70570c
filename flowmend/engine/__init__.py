"""The workflow model, patches, the operator base class and registry, and the inner loop."""

from flowmend.engine._workflow import (
    Function,
    Prompt,
    Step,
    Workflow,
    WorkflowError,
    dotted_name,
    matches_callee,
    parse_workflow,
)

__all__ = [
    "Function",
    "Prompt",
    "Step",
    "Workflow",
    "WorkflowError",
    "dotted_name",
    "matches_callee",
    "parse_workflow",
]
