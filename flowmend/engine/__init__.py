"""The workflow model, patches, the operator base class and registry, and the inner loop."""

from flowmend.engine._loop import (
    Candidate,
    Proposals,
    RepairConfig,
    RepairResult,
    repair,
)
from flowmend.engine._menu import MenuItem, menu
from flowmend.engine._operator import (
    Applied,
    ArgsError,
    Between,
    Case,
    Identifier,
    Invalid,
    NoArgs,
    NotApplicable,
    Operator,
    Reason,
    Refusal,
    RegistryError,
    Result,
    Text,
    all_operators,
    check_bounds,
    get,
    names,
    register,
)
from flowmend.engine._patch import (
    PATCH_SCHEMA,
    Patch,
    PatchError,
    apply_patch,
    apply_patches,
    diff,
    loads_patches,
    read_patches,
    validate,
)
from flowmend.engine._runtime import Budget, BudgetExhausted, RunRecord, run_workflow
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


# The inner loop pulls in the model, sandbox and verifier packages: loaded on first use, so the
# workflow model and the CLI's --help stay light (PEP 562).
_LAZY = {
    "repair": "_loop",
    "RepairConfig": "_loop",
    "RepairResult": "_loop",
    "Candidate": "_loop",
    "Proposals": "_loop",
    "Budget": "_runtime",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowmend.engine' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"flowmend.engine.{module}"), name)
    globals()[name] = value
    return value


def patch_schema() -> dict:
    """The JSON schema of patch files, generated from the registered operators."""
    from flowmend.engine._schema import patch_schema as generate

    return generate()


__all__ = [
    "Budget",
    "BudgetExhausted",
    "Candidate",
    "Proposals",
    "RepairConfig",
    "RepairResult",
    "RunRecord",
    "repair",
    "run_workflow",
    "PATCH_SCHEMA",
    "Budget",
    "Candidate",
    "Proposals",
    "RepairConfig",
    "RepairResult",
    "repair",
    "Applied",
    "ArgsError",
    "Between",
    "Case",
    "Function",
    "Identifier",
    "Invalid",
    "MenuItem",
    "NoArgs",
    "NotApplicable",
    "Operator",
    "Patch",
    "PatchError",
    "Prompt",
    "Reason",
    "Refusal",
    "RegistryError",
    "Result",
    "Step",
    "Text",
    "Workflow",
    "WorkflowError",
    "all_operators",
    "apply_patch",
    "apply_patches",
    "check_bounds",
    "diff",
    "dotted_name",
    "get",
    "loads_patches",
    "matches_callee",
    "menu",
    "names",
    "parse_workflow",
    "patch_schema",
    "read_patches",
    "register",
    "validate",
]
