"""`remove-step`: delete a step when the data flow allows it, unthreading its output from prompts."""

from __future__ import annotations

from typing import Any

import libcst as cst

from flowmend.engine._operator import Case, NoArgs
from flowmend.engine._workflow import Workflow
from flowmend.operators import _cst

# Calls that read or write variables by name, which a syntactic data-flow check cannot follow.
_DYNAMIC = frozenset({"eval", "exec", "locals", "vars", "globals"})


class RemoveStep(_cst.StepStatementOperator):
    name = "remove-step"
    kind = "structure"
    Args = NoArgs
    DESCRIPTION = (
        "Delete a step whose output nothing else needs (or that re-assigns a variable already "
        "set before it), dropping its output from the prompts it was fed into."
    )
    EXAMPLES = [
        Case(
            before='''
            def solve(task):
                plan = llm("Plan it.\\n\\n" + task.prompt)
                code = llm(task.prompt + f"\\n\\nPlan:\\n{plan}")
                return code
            ''',
            target={"step": "plan"},
            after='''
            def solve(task):
                code = llm(task.prompt)
                return code
            ''',
        ),
        # A repair step re-assigns `code`; without it, the first draft reaches the return.
        Case(
            before='''
            def solve(task):
                code = llm(task.prompt)
                # repair
                code = llm(f"Fix:\\n{code}")
                return code
            ''',
            target={"step": "code_2"},
            after='''
            def solve(task):
                code = llm(task.prompt)
                return code
            ''',
        ),
    ]
    NOT_APPLICABLE = [
        # `plan` is read by the next prompt in a way that cannot be unthreaded.
        Case(
            before='''
            def solve(task):
                plan = llm(task.prompt)
                code = llm(f"Follow {plan}")
                return code
            ''',
            target={"step": "plan"},
        ),
        # The only statement of its block.
        Case(
            before='''
            def solve(task):
                code = llm(task.prompt)
                if not code:
                    code = llm(task.prompt)
                return code
            ''',
            target={"step": "code_2"},
        ),
    ]

    def sites(self, wf: Workflow) -> list[dict]:
        return [{"step": s.id} for s in wf.steps if _removal(wf, s) is not None]

    def edit_region(self, wf: Workflow, target: dict, args: Any) -> list[tuple[int, int]]:
        step = wf.step(target["step"])
        threads = _removal(wf, step) or []
        return [_cst.node_lines(wf, step.statement)] + [_cst.node_lines(wf, t) for t in threads]

    def transform(self, wf: Workflow, target: dict, args: Any) -> cst.Module:
        step = wf.step(target["step"])
        threads = _removal(wf, step)
        mapping: dict = {step.statement: cst.RemovalSentinel.REMOVE}
        mapping.update({t: t.left for t in threads})
        return _cst.replace(wf, mapping)


def _removal(wf: Workflow, step: Any) -> list[cst.BinaryOperation] | None:
    """The thread suffixes to strip when removing `step`, or None when it cannot be removed."""
    return _cst.cached(wf, ("remove-step", step.id), lambda: _find_removal(wf, step))


def _find_removal(wf: Workflow, step: Any) -> list[cst.BinaryOperation] | None:
    if _cst.assigned_call(step.statement, step.call) is None:
        return None
    block, _ = _cst.block_of(wf, step.statement)
    if len(block.body) < 2:
        return None
    fn = _cst.step_function(wf, step)
    var = _cst.assigned_name(step)
    if var is None:
        small = step.statement.body[0]
        return [] if isinstance(small, cst.Expr) else None
    if _dynamic(fn, var):
        return None
    threads = [
        node for node in _cst.find(fn.body, cst.BinaryOperation) if _cst.threaded_name(node) == var
    ]
    in_threads = {id(n) for t in threads for n in _cst.find(t.right, cst.Name)}
    own = {id(n) for n in _cst.find(step.statement, cst.Name)}
    reads = [n for n in _cst.reads_in(wf, fn.body, var) if id(n) not in in_threads | own]
    if not reads:
        return threads
    if _bound_before(wf, fn, step.statement, var):
        return []
    return None


def _dynamic(fn: cst.FunctionDef, var: str) -> bool:
    for node in _cst.find(fn.body, cst.Global, cst.Nonlocal):
        if any(n.name.value == var for n in node.names):
            return True
    return any(
        isinstance(c.func, cst.Name) and c.func.value in _DYNAMIC for c in _cst.find(fn.body, cst.Call)
    )


def _bound_before(wf: Workflow, fn: cst.FunctionDef, statement: cst.CSTNode, var: str) -> bool:
    """Whether `var` is surely bound when `statement` runs: a parameter, or a plain assignment
    earlier in the same block or in an enclosing block of the function."""
    params = fn.params
    names = [*params.posonly_params, *params.params, *params.kwonly_params]
    if any(p.name.value == var for p in names):
        return True
    node = statement
    while node is not fn and node is not None:
        parent = _cst.parent(wf, node)
        if isinstance(parent, (cst.IndentedBlock, cst.Module)):
            for earlier in parent.body:
                if earlier is node:
                    break
                if _assigns(earlier, var):
                    return True
        node = parent
    return False


def _assigns(statement: cst.CSTNode, var: str) -> bool:
    if not isinstance(statement, cst.SimpleStatementLine):
        return False
    for small in statement.body:
        if isinstance(small, cst.Assign) and any(
            isinstance(t.target, cst.Name) and t.target.value == var for t in small.targets
        ):
            return True
        if isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name) \
                and small.target.value == var and small.value is not None:
            return True
    return False
