"""`branch-on-check`: verify a step's code and route to a repair prompt made for the kind of failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import libcst as cst

from flowmend.engine._operator import Case, Text, check_bounds
from flowmend.engine._workflow import Workflow
from flowmend.operators import _cst

# The kinds `verify(code).kind` reports besides "ok", in the order the branches test them.
FAILURE_KINDS = ("no_code", "syntax_error", "runtime_error", "failing_check")


@dataclass(frozen=True)
class BranchOnCheckArgs:
    syntax_error: Annotated[str, Text(1, 1000, one_line=True)] = (
        "The code below does not parse. Fix the syntax and return the complete code."
    )
    """Repair instruction when the code does not parse."""
    runtime_error: Annotated[str, Text(1, 1000, one_line=True)] = (
        "The code below raises an exception. Fix the cause and return the complete code."
    )
    """Repair instruction when the code raises."""
    failing_check: Annotated[str, Text(1, 1000, one_line=True)] = (
        "The code below runs but gives wrong results. Fix the logic and return the complete code."
    )
    """Repair instruction when the code runs but a check fails."""
    no_code: Annotated[str, Text(1, 1000, one_line=True)] = (
        "The answer below contains no Python code. Write the complete function in one "
        "```python block."
    )
    """Repair instruction when the answer holds no code at all."""

    def __post_init__(self) -> None:
        check_bounds(self)


class BranchOnCheck(_cst.StepStatementOperator):
    name = "branch-on-check"
    kind = "structure"
    Args = BranchOnCheckArgs
    DESCRIPTION = (
        "After a step that yields code, run verify(code) and repair with a different prompt for "
        "no code, a syntax error, a runtime error or a failing check."
    )
    EXAMPLES = [
        Case(
            before='''
            def solve(task):
                code = llm(task.prompt)
                return code
            ''',
            args={"syntax_error": "Fix the syntax.", "runtime_error": "Fix the crash.",
                  "failing_check": "Fix the logic.", "no_code": "Write code."},
            after='''
            def solve(task):
                code = llm(task.prompt)
                check = verify(code)
                if check.kind == "no_code":
                    code = llm(f"Write code.\\n\\nCheck ({check.kind}):\\n{check.feedback}\\n\\nCode:\\n{code}")
                elif check.kind == "syntax_error":
                    code = llm(f"Fix the syntax.\\n\\nCheck ({check.kind}):\\n{check.feedback}\\n\\nCode:\\n{code}")
                elif check.kind == "runtime_error":
                    code = llm(f"Fix the crash.\\n\\nCheck ({check.kind}):\\n{check.feedback}\\n\\nCode:\\n{code}")
                elif check.kind == "failing_check":
                    code = llm(f"Fix the logic.\\n\\nCheck ({check.kind}):\\n{check.feedback}\\n\\nCode:\\n{code}")
                return code
            ''',
        ),
    ]
    NOT_APPLICABLE = [
        # The step's output is not assigned to a variable, so there is nothing to repair.
        Case(
            before='''
            def solve(task):
                return llm(task.prompt)
            ''',
        ),
    ]

    def sites(self, wf: Workflow) -> list[dict]:
        return _cst.code_step_sites(wf)

    def transform(self, wf: Workflow, target: dict, args: BranchOnCheckArgs) -> cst.Module:
        step = wf.step(target["step"])
        answer, var = _cst.answer_of(step), _cst.result_target(step)
        check = _cst.fresh_name(wf, "check")
        lines = [f"{check} = verify({answer})\n"]
        for i, kind in enumerate(FAILURE_KINDS):
            keyword = "if" if i == 0 else "elif"
            call = _cst.call_expr(step, wf, _cst.repair_prompt(getattr(args, kind), check, answer))
            lines.append(f'{keyword} {check}.kind == "{kind}":\n{_cst.indent(wf)}{var} = {call}\n')
        new = [step.statement, *_cst.parse_statements(wf, "".join(lines))]
        return _cst.replace(wf, {step.statement: cst.FlattenSentinel(new)})
