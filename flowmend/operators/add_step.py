"""`add-step`: insert a new LLM step (plan, tests, critique) before or after a step, and thread
its output into the next prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

import libcst as cst

from flowmend.engine._operator import Case, Reason, Text, check_bounds
from flowmend.engine._workflow import Workflow
from flowmend.operators import _cst, _quote

INSTRUCTIONS = {
    ("plan", "before"): "Write a short numbered plan for solving the task below. Do not write code yet.",
    ("plan", "after"): "Write a short numbered plan for improving the answer below.",
    ("tests", "before"): (
        "Write a few assert statements that a correct solution to the task below must pass. "
        "Do not solve it."
    ),
    ("tests", "after"): "Write a few assert statements that check the code below, edge cases included.",
    ("critique", "before"): "List the pitfalls and edge cases of the task below. Do not solve it.",
    ("critique", "after"): (
        "Review the answer below: list concrete mistakes and missed cases. Do not rewrite it."
    ),
}
LABELS = {"plan": "Plan", "tests": "Tests", "critique": "Review"}


@dataclass(frozen=True)
class AddStepArgs:
    purpose: Literal["plan", "tests", "critique"] = "plan"
    """What the new step writes; also names its variable and the label it is threaded under."""
    position: Literal["before", "after"] = "before"
    """Before the step (it sees the step's prompt) or after it (it sees the step's output)."""
    instruction: Optional[Annotated[str, Text(1, 1000, one_line=True)]] = None
    """The new step's instruction; null uses the standard one for the purpose and position."""

    def __post_init__(self) -> None:
        check_bounds(self)


class AddStep(_cst.StepStatementOperator):
    name = "add-step"
    kind = "structure"
    Args = AddStepArgs
    DESCRIPTION = (
        "Insert a new LLM step (plan, tests or critique) before or after a step and feed its "
        "output into the next prompt."
    )
    EXAMPLES = [
        Case(
            before='''
            def solve(task):
                code = llm(f"Solve:\\n{task.prompt}")
                return code
            ''',
            args={"purpose": "plan", "position": "before"},
            after='''
            def solve(task):
                plan = llm("Write a short numbered plan for solving the task below. Do not write code yet.\\n\\n" + f"Solve:\\n{task.prompt}")
                code = llm(f"Solve:\\n{task.prompt}" + f"\\n\\nPlan:\\n{plan}")
                return code
            ''',
        ),
        Case(
            before='''
            async def solve(task):
                draft = await llm(task.prompt)
                code = await llm("Improve:\\n" + draft)
                return code
            ''',
            args={"purpose": "critique", "position": "after", "instruction": "Find the bugs."},
            target={"step": "draft"},
            after='''
            async def solve(task):
                draft = await llm(task.prompt)
                critique = await llm(f"Find the bugs.\\n\\n{draft}")
                code = await llm("Improve:\\n" + draft + f"\\n\\nReview:\\n{critique}")
                return code
            ''',
        ),
    ]
    NOT_APPLICABLE = [
        # Nothing reads the step's output, so a critique after it would feed no prompt.
        Case(
            before='''
            def solve(task):
                code = llm(task.prompt)
                return code
            ''',
            args={"purpose": "critique", "position": "after"},
            target={"step": "code"},
        ),
        # A conditional prompt would need parentheses that remove-step could not tell apart.
        Case(
            before='''
            def solve(task):
                return llm(task.prompt if task.prompt else "?")
            ''',
        ),
    ]

    def sites(self, wf: Workflow) -> list[dict]:
        return [
            {"step": s.id}
            for s in wf.steps
            if _cst.assigned_call(s.statement, s.call) is not None
            and _cst.plain_call(s)
            and _cst.binds_tighter_than_add(s.prompt.call_node)
        ]

    def presets(self, wf: Workflow, target: dict) -> list[Any]:
        presets = [self.Args("plan", "before"), self.Args("tests", "before")]
        if _consumer(wf, wf.step(target["step"])) is not None:
            presets.append(self.Args("critique", "after"))
        return presets

    def edit_region(self, wf: Workflow, target: dict, args: Any) -> list[tuple[int, int]]:
        step = wf.step(target["step"])
        regions = [_cst.node_lines(wf, step.statement)]
        if args.position == "after":
            consumer = _consumer(wf, step)
            if consumer is not None:
                regions.append(_cst.node_lines(wf, consumer.prompt.call_node))
        return regions

    def transform(self, wf: Workflow, target: dict, args: AddStepArgs) -> cst.Module:
        step = wf.step(target["step"])
        new_var = _cst.fresh_name(wf, args.purpose)
        instruction = args.instruction or INSTRUCTIONS[(args.purpose, args.position)]
        label = LABELS[args.purpose]
        # The new step is called like the step (the prompt where its convention puts it), and
        # its text answer, read through the convention's accessor, joins the prompt at the call.
        at_call = step.prompt.call_node
        new_answer = step.convention.answer_of(new_var)
        if args.position == "before":
            prompt = f"{_quote.render_literal(instruction + chr(10) * 2)} + {_cst.code_of(wf, at_call)}"
            new = _cst.parse_statements(wf, f"{new_var} = {_cst.call_expr(step, wf, prompt)}\n")[0]
            threaded = step.statement.deep_replace(
                at_call, _cst.thread(at_call, label, new_answer)
            )
            return _cst.replace(wf, {step.statement: cst.FlattenSentinel([new, threaded])})
        var = _cst.answer_of(step)
        consumer = _consumer(wf, step)
        _cst.require(
            consumer is not None, Reason.DATA_FLOW,
            f"no later step in {step.function} reads {step.id}'s output ({var or 'unassigned'}) "
            "through a prompt the new step's output could join",
        )
        prompt = f'f"{_quote.fstring_text(instruction)}\\n\\n{{{var}}}"'
        new = _cst.parse_statements(wf, f"{new_var} = {_cst.call_expr(step, wf, prompt)}\n")[0]
        return _cst.replace(wf, {
            step.statement: cst.FlattenSentinel([step.statement, new]),
            consumer.prompt.call_node: _cst.thread(consumer.prompt.call_node, label,
                                                   consumer.convention.answer_of(new_var)),
        })


def _consumer(wf: Workflow, step: Any) -> Any | None:
    """The first later step whose prompt reads the step's output and that a new variable
    assigned right after the step reaches (same block, or nested in a later statement of it)."""
    return _cst.cached(wf, ("add-step consumer", step.id), lambda: _find_consumer(wf, step))


def _find_consumer(wf: Workflow, step: Any) -> Any | None:
    var = _cst.answer_variable(step)
    if var is None:
        return None
    block, index = _cst.block_of(wf, step.statement)
    for other in wf.steps:
        if other.function != step.function or other.line <= step.line or other.prompt is None:
            continue
        at_call = other.prompt.call_node
        if at_call is None or not _cst.binds_tighter_than_add(at_call):
            continue
        if not _cst.reads_in(wf, at_call, var):
            continue
        node = other.call
        while node is not None and _cst.parent(wf, node) is not block:
            node = _cst.parent(wf, node)
        if node is not None:
            position = next(i for i, s in enumerate(block.body) if s is node)
            if position > index:
                return other
    return None
