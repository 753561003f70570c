"""The workflow model, patches, the operator base class and library, and the inner loop.

Names load on first use (PEP 562): the workflow model pulls in libcst and the loop pulls in the
model, sandbox and verifier packages, and `flowmend --help` or `flowmend evaluate` need none.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "_loop": ("Candidate", "Proposals", "RepairConfig", "RepairResult", "repair"),
    "_library": ("LibraryError", "OperatorLibrary", "default_library", "load_library"),
    "_menu": ("MenuItem", "menu"),
    "_operator": (
        "Applied", "ArgsError", "Between", "Case", "Identifier", "Invalid", "NoArgs",
        "NotApplicable", "Operator", "Reason", "Refusal", "Result", "Text",
        "all_operators", "check_bounds", "get", "names",
    ),
    "_patch": (
        "PATCH_SCHEMA", "Patch", "PatchError", "apply_patch", "apply_patches", "diff",
        "loads_patches", "read_patches", "validate",
    ),
    "_runtime": ("Budget", "BudgetExhausted", "RunRecord", "run_workflow"),
    "_workflow": (
        "Function", "Prompt", "Step", "Workflow", "WorkflowError", "dotted_name",
        "matches_callee", "parse_workflow",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flowmend.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flowmend.engine.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def patch_schema(library=None) -> dict:
    """The JSON schema of patch files, generated from the operators of `library` (default:
    the built-ins)."""
    from flowmend.engine._schema import patch_schema as generate

    return generate(library)


__all__ = sorted([*_WHERE, "patch_schema"])
