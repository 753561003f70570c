"""The checks every operator application passes, and the new workflow made from what they parsed.

One parse (the new workflow keeps the module) and one compile (the free-name check reads the
compiled code) per application.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import libcst as cst

from flowmend.engine._names import free_names
from flowmend.engine._result import Applied, Invalid, Reason
from flowmend.engine._workflow import Workflow

# Names a workflow may use without defining them: the runtime injects them into its globals.
RUNTIME_NAMES = frozenset({"llm", "verify", "extract_code", "Check", "VerifyLimitExceeded",
                           "BudgetExhausted"})


def check_result(wf: Workflow, source: str,
                 files: Mapping[str, tuple[str, str]] | None = None) -> Applied | Invalid:
    """The checks every application passes, and the new workflow when `source` passes them.

    One parse (the new workflow keeps the module), one compile (the free-name check reads the
    compiled code): the new source parses, compiles, keeps the entry function's signature and
    reads no name that nothing defines. `files` are the sibling modules the edit changes too,
    by path, (before, after): each must compile, and the diff shows them after the workflow.
    """
    files = dict(files or {})
    for path, (_, after) in files.items():
        try:
            compile(after, path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as err:
            return Invalid(Reason.COMPILE, f"edited module {path} does not compile: {err}")
    try:
        new = cst.parse_module(source)
    except cst.ParserSyntaxError as err:
        return Invalid(Reason.PARSE, f"edited workflow does not parse: {err.message}")
    try:
        code = compile(source, wf.path or "<workflow>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as err:
        return Invalid(Reason.COMPILE, f"edited workflow does not compile: {err}")
    before = wf.cached(_SIGNATURE, lambda: entry_signature(wf.module, wf.entry))
    after = entry_signature(new, wf.entry)
    if before != after:
        return Invalid(
            Reason.SIGNATURE,
            f"entry {wf.entry} changed signature: {before or 'missing'} -> {after or 'missing'}",
        )
    reads = free_names(code)
    allowed = RUNTIME_NAMES | {c.split(".")[0].split("[")[0] for c in wf.step_callees}
    introduced = reads - _free_names_of(wf) - allowed
    if introduced:
        return Invalid(
            Reason.FREE_VARIABLE, f"edit reads undefined name(s): {', '.join(sorted(introduced))}"
        )
    changed = {**wf.files, **{path: after for path, (_, after) in files.items()}}
    child = Workflow(source, wf.path, new, wf.entry, wf.step_callees, wf.conventions,
                     changed, {_FREE_NAMES: reads})
    diff = unified_diff(wf.source, source, wf.path or "workflow.py") + "".join(
        unified_diff(before, after, path) for path, (before, after) in files.items())
    return Applied(source, diff, child, files=changed)


_SIGNATURE = "entry signature"
_FREE_NAMES = "free names"


def _free_names_of(wf: Workflow) -> frozenset[str]:
    """The parent's free names: known for a workflow an application made, else compiled once.

    A parent that does not compile has none to compare with, so every free name of an edit
    of it counts as new (its edits rarely compile anyway)."""

    def compute() -> frozenset[str]:
        try:
            return free_names(wf.source, wf.path or "<workflow>")
        except (SyntaxError, ValueError):
            return frozenset()

    return wf.cached(_FREE_NAMES, compute)


def entry_signature(module: cst.Module, entry: str) -> str | None:
    """The entry function's signature as source text (``async def solve(task) -> str``)."""
    node = find_function(module, entry)
    if node is None:
        return None
    prefix = "async def" if node.asynchronous else "def"
    returns = f" -> {module.code_for_node(node.returns.annotation)}" if node.returns else ""
    params = module.code_for_node(node.params)
    decorators = "".join(f"@{module.code_for_node(d.decorator)} " for d in node.decorators)
    return f"{decorators}{prefix} {node.name.value}({' '.join(params.split())}){returns}"


def find_function(module: cst.Module, qualified: str) -> cst.FunctionDef | None:
    """The function `qualified` (``solve`` or ``Flow.run``) defined at module or class level."""
    parts = qualified.split(".")
    body: Any = module.body
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        found = None
        for stmt in body:
            if last and isinstance(stmt, cst.FunctionDef) and stmt.name.value == part:
                found = stmt
            elif not last and isinstance(stmt, cst.ClassDef) and stmt.name.value == part:
                found = stmt
        if found is None:
            return None
        if last:
            return found
        body = found.body.body
    return None


def unified_diff(before: str, after: str, path: str = "workflow.py") -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )
