"""`insert-verify-step`: after a step that yields code, verify it and repair it once if it fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import libcst as cst

from flowmend.engine._operator import Case, Text, check_bounds
from flowmend.engine._workflow import Workflow
from flowmend.operators import _cst

DEFAULT_INSTRUCTION = "The code below failed a check. Fix it and return the complete corrected code."


@dataclass(frozen=True)
class InsertVerifyStepArgs:
    instruction: Annotated[str, Text(1, 1000, one_line=True)] = DEFAULT_INSTRUCTION
    """What the repair call asks for; the check's feedback and the code follow it."""

    def __post_init__(self) -> None:
        check_bounds(self)


class InsertVerifyStep(_cst.StepStatementOperator):
    name = "insert-verify-step"
    kind = "structure"
    Args = InsertVerifyStepArgs
    DESCRIPTION = (
        "After a step that yields code, run verify(code) and, only if it fails, "
        "ask the model to repair the code using the check's feedback."
    )
    EXAMPLES = [
        Case(
            before='''
            def solve(task):
                code = llm(task.prompt)
                return extract_code(code)
            ''',
            args={},
            after='''
            def solve(task):
                code = llm(task.prompt)
                check = verify(code)
                if not check.passed:
                    try:
                        code = llm(f"The code below failed a check. Fix it and return the complete corrected code.\\n\\nCheck ({check.kind}):\\n{check.feedback}\\n\\nCode:\\n{code}")
                    except BudgetExhausted:
                        pass
                return extract_code(code)
            ''',
        ),
        Case(
            before='''
            async def solve(task):
                for attempt in range(2):
                    # the draft
                    draft = await llm(task.prompt, model="smollm2")
                return draft
            ''',
            args={"instruction": "Repair it."},
            after='''
            async def solve(task):
                for attempt in range(2):
                    # the draft
                    draft = await llm(task.prompt, model="smollm2")
                    check = verify(draft)
                    if not check.passed:
                        try:
                            draft = await llm(f"Repair it.\\n\\nCheck ({check.kind}):\\n{check.feedback}\\n\\nCode:\\n{draft}", model="smollm2")
                        except BudgetExhausted:
                            pass
                return draft
            ''',
        ),
    ]
    NOT_APPLICABLE = [
        # A plan is not code: nothing returns, extracts or verifies it.
        Case(
            before='''
            def solve(task):
                plan = llm(task.prompt)
                return len(plan)
            ''',
        ),
        # Already verified right after the step.
        Case(
            before='''
            def solve(task):
                code = llm(task.prompt)
                result = verify(code)
                return code
            ''',
        ),
    ]

    def sites(self, wf: Workflow) -> list[dict]:
        return _cst.code_step_sites(wf)

    def presets(self, wf: Workflow, target: dict) -> list[Any]:
        return [
            self.Args(),
            self.Args(instruction="Fix the bug described by the feedback. Return only the corrected code."),
        ]

    def transform(self, wf: Workflow, target: dict, args: InsertVerifyStepArgs) -> cst.Module:
        step = wf.step(target["step"])
        # The check reads the text answer through the step's convention; the repair call
        # assigns the step's own target, so what follows reads it as before.
        answer = _cst.answer_of(step)
        check = _cst.fresh_name(wf, "check")
        prompt = _cst.repair_prompt(args.instruction, check, answer)
        ind = _cst.indent(wf)
        # A repair the budget refuses keeps the unrepaired answer.
        code = (
            f"{check} = verify({answer})\n"
            f"if not {check}.passed:\n"
            f"{ind}try:\n"
            f"{ind * 2}{_cst.result_target(step)} = {_cst.call_expr(step, wf, prompt)}\n"
            f"{ind}except BudgetExhausted:\n"
            f"{ind * 2}pass\n"
        )
        new = [step.statement, *_cst.parse_statements(wf, code)]
        return _cst.replace(wf, {step.statement: cst.FlattenSentinel(new)})

