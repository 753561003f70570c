"""The workflow model, patches, the operator base class and library, and the inner loop.

Names load on first use (PEP 562): the workflow model pulls in libcst and the loop pulls in the
model, sandbox and verifier packages, and `flowmend --help` or `flowmend evaluate` need none.
"""

from __future__ import annotations

from flowmend import _api


def patch_schema(library=None) -> dict:
    """The JSON schema of patch files, generated from the operators of `library` (default:
    the built-ins)."""
    from flowmend.engine._schema import patch_schema as generate

    return generate(library)


_api.public_api(__name__, globals(), {
    _api.HERE: ("patch_schema",),
    "_convention": ("Convention", "ConventionError"),
    "_project": ("ProjectConfig", "ProjectConfigError", "find_project_config",
                 "read_project_config"),
    "_steps": ("CallNote", "explain_calls"),
    "_loop": ("Candidate", "Proposals", "RepairConfig", "RepairResult", "repair"),
    "_optimizer": ("CHOICE_FIELDS", "OptimizerConfig", "TEXT_FIELDS", "check_template"),
    "_library": ("LibraryError", "OperatorLibrary", "default_library", "load_library"),
    "_menu": ("MenuItem", "menu"),
    "_operator": (
        "Applied", "ArgsError", "Between", "Case", "Edits", "Identifier", "Invalid", "NoArgs",
        "NotApplicable", "Operator", "Reason", "Refusal", "Result", "Text",
        "check_bounds",
    ),
    "_patch": (
        "PATCH_SCHEMA", "Patch", "PatchError", "apply_patch", "apply_patches", "diff",
        "loads_patches", "read_patches", "validate",
    ),
    "_runtime": ("Budget", "BudgetExhausted", "Meter", "RunRecord", "run_workflow"),
    "_trace": (
        "ErrorEvent", "IterationEvent", "LlmEvent", "MenuEvent", "ProposalEvent", "StartEvent",
        "StopEvent", "TraceEvent", "VerdictEvent",
    ),
    "_workflow": (
        "Function", "Prompt", "Step", "Workflow", "WorkflowError", "dotted_name",
        "matches_callee", "parse_workflow",
    ),
})
