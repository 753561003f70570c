"""`reorder-steps`: swap two adjacent steps that do not depend on each other."""

from __future__ import annotations

from typing import Any

import libcst as cst

from flowmend.engine._operator import Case, NoArgs
from flowmend.engine._workflow import Workflow
from flowmend.operators import _cst


class ReorderSteps(_cst.StepStatementOperator):
    name = "reorder-steps"
    kind = "structure"
    Args = NoArgs
    DESCRIPTION = (
        "Swap a step with the step right after it when neither reads what the other writes."
    )
    EXAMPLES = [
        Case(
            before='''
            def solve(task):
                # two independent drafts
                a = llm(f"Draft A: {task.prompt}")
                b = llm(f"Draft B: {task.prompt}", temperature=0.8)
                return llm(f"Merge {a} and {b}")
            ''',
            target={"step": "a", "with": "b"},
            after='''
            def solve(task):
                b = llm(f"Draft B: {task.prompt}", temperature=0.8)
                # two independent drafts
                a = llm(f"Draft A: {task.prompt}")
                return llm(f"Merge {a} and {b}")
            ''',
        ),
    ]
    NOT_APPLICABLE = [
        # The second step reads the first one's output.
        Case(
            before='''
            def solve(task):
                plan = llm(task.prompt)
                code = llm(f"{plan}")
                return code
            ''',
        ),
    ]

    def sites(self, wf: Workflow) -> list[dict]:
        sites = []
        steps = [s for s in wf.steps if _cst.assigned_call(s.statement, s.call) is not None]
        by_statement = {id(s.statement): s for s in steps}
        for first in steps:
            nxt = _cst.next_statement(wf, first.statement)
            second = by_statement.get(id(nxt)) if nxt is not None else None
            if second is not None and _independent(wf, first, second):
                sites.append({"step": first.id, "with": second.id})
        return sites

    def edit_region(self, wf: Workflow, target: dict, args: Any) -> list[tuple[int, int]]:
        first, second = wf.step(target["step"]), wf.step(target["with"])
        return [(_cst.node_lines(wf, first.statement)[0], _cst.node_lines(wf, second.statement)[1])]

    def transform(self, wf: Workflow, target: dict, args: Any) -> cst.Module:
        first, second = wf.step(target["step"]), wf.step(target["with"])
        return _cst.replace(wf, {first.statement: second.statement,
                                        second.statement: first.statement})


def _independent(wf: Workflow, first: Any, second: Any) -> bool:
    writes_first = _cst.target_names(first)
    writes_second = _cst.target_names(second)
    reads_first = _cst.names_read(wf, first.statement)
    reads_second = _cst.names_read(wf, second.statement)
    return not (
        writes_first & reads_second or writes_second & reads_first or writes_first & writes_second
    )
