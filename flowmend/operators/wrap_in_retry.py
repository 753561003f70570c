"""`wrap-in-retry`: re-run a step until a condition holds, a bounded number of times."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import libcst as cst

from flowmend.engine._operator import Between, Case, check_bounds
from flowmend.engine._workflow import Workflow
from flowmend.operators import _cst

UNTIL = ("no-exception", "extracts", "compiles", "verify")


@dataclass(frozen=True)
class WrapInRetryArgs:
    max_attempts: Annotated[int, Between(2, 5)] = 3
    """How many times the step may run at most (2 to 5)."""
    until: Literal["no-exception", "extracts", "compiles", "verify"] = "no-exception"
    """When to stop: the call did not raise, extract_code finds code, the code compiles, verify passes."""

    def __post_init__(self) -> None:
        check_bounds(self)


class WrapInRetry(_cst.StepStatementOperator):
    name = "wrap-in-retry"
    kind = "structure"
    Args = WrapInRetryArgs
    DESCRIPTION = (
        "Re-run a step until its call does not raise, its code extracts, compiles or passes "
        "verify, at most max_attempts times."
    )
    EXAMPLES = [
        Case(
            before='''
            def solve(task):
                code = llm(task.prompt)  # one shot
                return code
            ''',
            args={"max_attempts": 2},
            after='''
            def solve(task):
                for attempt in range(2):
                    try:
                        code = llm(task.prompt)  # one shot
                    except BudgetExhausted:
                        raise
                    except Exception:
                        if attempt == 1:
                            raise
                        continue
                    break
                return code
            ''',
        ),
        Case(
            before='''
            async def solve(task):
                attempt = 0
                code = await llm(task.prompt)
                return code
            ''',
            args={"max_attempts": 3, "until": "compiles"},
            after='''
            async def solve(task):
                attempt = 0
                for attempt2 in range(3):
                    try:
                        code = await llm(task.prompt)
                    except BudgetExhausted:
                        if attempt2 == 0:
                            raise
                        break
                    except Exception:
                        if attempt2 == 2:
                            raise
                        continue
                    try:
                        compile(extract_code(code), "<step>", "exec")
                    except Exception:
                        continue
                    break
                return code
            ''',
        ),
        Case(
            before='''
            def solve(task):
                code = llm(task.prompt)
                return code
            ''',
            args={"max_attempts": 4, "until": "verify"},
            after='''
            def solve(task):
                for attempt in range(4):
                    try:
                        code = llm(task.prompt)
                    except BudgetExhausted:
                        if attempt == 0:
                            raise
                        break
                    except Exception:
                        if attempt == 3:
                            raise
                        continue
                    if verify(code).passed:
                        break
                return code
            ''',
        ),
    ]
    NOT_APPLICABLE = [
        # The call is a condition, not a statement of its own: there is nothing to wrap.
        Case(
            before='''
            def solve(task):
                if llm(task.prompt) == "yes":
                    return "ok"
                return "no"
            ''',
            args={},
        ),
    ]

    def sites(self, wf: Workflow) -> list[dict]:
        return [{"step": s.id} for s in _cst.answer_steps(wf)]

    def presets(self, wf: Workflow, target: dict) -> list[Any]:
        step = wf.step(target["step"])
        presets = [self.Args(max_attempts=2), self.Args(max_attempts=3)]
        if _cst.yields_code(wf, step):
            presets += [self.Args(max_attempts=3, until="compiles"), self.Args(max_attempts=3, until="verify")]
        return presets

    def transform(self, wf: Workflow, target: dict, args: WrapInRetryArgs) -> cst.Module:
        step = wf.step(target["step"])
        var = _cst.answer_of(step)  # the text answer, read through the step's convention
        i = _cst.fresh_name(wf, "attempt")
        ind = _cst.indent(wf)
        lines = [
            f"for {i} in range({args.max_attempts}):",
            f"{ind}try:",
            f"{ind * 2}{_cst.STEP_SLOT}",
        ]
        # A budget refusal is not retried. Past the first attempt it keeps the last attempt's
        # answer; until no-exception, every earlier attempt raised, so there is none.
        lines.append(f"{ind}except BudgetExhausted:")
        if args.until == "no-exception":
            lines.append(f"{ind * 2}raise")
        else:
            lines += [f"{ind * 2}if {i} == 0:", f"{ind * 3}raise", f"{ind * 2}break"]
        lines += [
            f"{ind}except Exception:",
            f"{ind * 2}if {i} == {args.max_attempts - 1}:",
            f"{ind * 3}raise",
            f"{ind * 2}continue",
        ]
        if args.until == "no-exception":
            lines.append(f"{ind}break")
        elif args.until == "extracts":
            lines += [f"{ind}if extract_code({var}):", f"{ind * 2}break"]
        elif args.until == "verify":
            lines += [f"{ind}if verify({var}).passed:", f"{ind * 2}break"]
        else:
            lines += [
                f"{ind}try:",
                f'{ind * 2}compile(extract_code({var}), "<step>", "exec")',
                f"{ind}except Exception:",
                f"{ind * 2}continue",
                f"{ind}break",
            ]
        new = _cst.with_leading(_cst.parse_statements(wf, "\n".join(lines) + "\n", step.statement),
                                step.statement.leading_lines)
        return _cst.replace(wf, {step.statement: cst.FlattenSentinel(new)})
