"""`swap-model`: choose which model one step calls, through its `model=` keyword."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import libcst as cst

from flowmend.engine._operator import Case, Reason, Text, check_bounds
from flowmend.engine._workflow import Workflow
from flowmend.operators import _cst, _quote


@dataclass(frozen=True)
class SwapModelArgs:
    model: Annotated[str, Text(1, 200, one_line=True)]
    """The model the step calls: a name the model store knows, a folder, or a hub id."""

    def __post_init__(self) -> None:
        check_bounds(self)


class SwapModel(_cst.StepStatementOperator):
    name = "swap-model"
    kind = "structure"
    Args = SwapModelArgs
    DESCRIPTION = "Make one step call a different model (its model= keyword)."
    IDEMPOTENT = True
    CONVENTION_PARAMS = ("model",)
    EXAMPLES = [
        Case(
            before='''
            def solve(task):
                plan = llm(f"Plan: {task.prompt}", model="smollm2")
                code = llm(f"{plan}\\n{task.prompt}")
                return code
            ''',
            args={"model": "gemma3-270m"},
            target={"step": "plan"},
            after='''
            def solve(task):
                plan = llm(f"Plan: {task.prompt}", model="gemma3-270m")
                code = llm(f"{plan}\\n{task.prompt}")
                return code
            ''',
        ),
    ]
    NOT_APPLICABLE = [
        Case(
            before='''
            def solve(task, **options):
                return llm(task.prompt, **options)
            ''',
            args={"model": "smollm2"},
        ),
    ]

    def sites(self, wf: Workflow) -> list[dict]:
        return [{"step": s.id} for s in wf.steps if not any(a.star == "**" for a in s.call.args)
                and _cst.accepts(s, "model")]

    def presets(self, wf: Workflow, target: dict) -> list[Any]:
        # Operators know no model store: offer the other models this workflow already names.
        current = dict(wf.step(target["step"]).params).get("model")
        names = []
        for step in wf.steps:
            value = _cst.keyword_value(step.call, "model")
            if isinstance(value, cst.SimpleString):
                text = value.evaluated_value
                if isinstance(text, str) and text.strip() and "\n" not in text and text not in names \
                        and wf.module.code_for_node(value) != current:
                    names.append(text)
        return [self.Args(model=n) for n in names]

    def edit_region(self, wf: Workflow, target: dict, args: Any) -> list[tuple[int, int]]:
        return [_cst.node_lines(wf, wf.step(target["step"]).call)]

    def transform(self, wf: Workflow, target: dict, args: SwapModelArgs) -> cst.Module:
        step = wf.step(target["step"])
        _cst.require(_cst.accepts(step, "model"), Reason.CONVENTION,
                     f"step {step.id}'s callee takes no model (convention "
                     f"{step.convention.name!r})")
        call = step.call
        value = cst.parse_expression(_quote.render_literal(args.model))
        return _cst.replace(wf, {call: _cst.set_keyword(call, "model", value)})
