"""`sample-and-select`: draw n samples of a step and keep the first one that verify passes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import libcst as cst

from flowmend.engine._operator import Between, Case, Reason, check_bounds
from flowmend.engine._workflow import Workflow
from flowmend.operators import _cst


@dataclass(frozen=True)
class SampleAndSelectArgs:
    n: Annotated[int, Between(2, 8)] = 3
    """How many samples the step draws (2 to 8)."""
    temperature: Optional[Annotated[float, Between(0.0, 2.0)]] = 0.8
    """Sampling temperature of the samples (0 to 2); null keeps the step's own."""

    def __post_init__(self) -> None:
        check_bounds(self)


class SampleAndSelect(_cst.StepStatementOperator):
    name = "sample-and-select"
    kind = "structure"
    Args = SampleAndSelectArgs
    DESCRIPTION = (
        "Call a step that yields code n times and keep the first sample verify passes "
        "(else the first sample)."
    )
    EXAMPLES = [
        Case(
            before='''
            def solve(task):
                code = llm(task.prompt, max_tokens=512)
                return code
            ''',
            args={"n": 4},
            after='''
            def solve(task):
                samples = []
                for sample_index in range(4):
                    try:
                        samples.append(llm(task.prompt, max_tokens=512, temperature=0.8))
                    except BudgetExhausted:
                        if not samples:
                            raise
                        break
                code = max(samples, key=lambda sample: verify(sample).passed)
                return code
            ''',
        ),
        Case(
            before='''
            async def solve(task):
                # draft it
                code = await llm(task.prompt, temperature=0.0)
                return code
            ''',
            args={"n": 2, "temperature": None},
            after='''
            async def solve(task):
                # draft it
                samples = []
                for sample_index in range(2):
                    try:
                        samples.append(await llm(task.prompt, temperature=0.0))
                    except BudgetExhausted:
                        if not samples:
                            raise
                        break
                code = max(samples, key=lambda sample: verify(sample).passed)
                return code
            ''',
        ),
    ]
    NOT_APPLICABLE = [
        Case(
            before='''
            def solve(task):
                notes = llm(task.prompt)
                return len(notes)
            ''',
        ),
    ]

    def sites(self, wf: Workflow) -> list[dict]:
        return [{"step": s.id} for s in _cst.answer_steps(wf) if _cst.plain_call(s) and _cst.yields_code(wf, s)]

    def presets(self, wf: Workflow, target: dict) -> list[Any]:
        if not _cst.accepts(wf.step(target["step"]), "temperature"):
            # The callee takes no temperature: the samples repeat the call as it is.
            return [self.Args(n=3, temperature=None), self.Args(n=5, temperature=None)]
        return [self.Args(n=3), self.Args(n=5)]

    def transform(self, wf: Workflow, target: dict, args: SampleAndSelectArgs) -> cst.Module:
        step = wf.step(target["step"])
        var = _cst.result_target(step)
        samples = _cst.fresh_name(wf, "samples")
        index = _cst.fresh_name(wf, "sample_index")
        _cst.require(
            args.temperature is None or _cst.accepts(step, "temperature"), Reason.CONVENTION,
            f"step {step.id}'s callee takes no temperature (convention "
            f"{step.convention.name!r}); sample with temperature null to repeat the call as is")
        overrides = {"temperature": repr(args.temperature)} if args.temperature is not None else {}
        call = _cst.call_expr(step, wf, _cst.code_of(wf, step.prompt.call_node),
                              overrides=overrides)
        ind = _cst.indent(wf)
        # The budget may stop the sampling early: select among the samples drawn so far.
        code = (
            f"{samples} = []\n"
            f"for {index} in range({args.n}):\n"
            f"{ind}try:\n"
            f"{ind * 2}{samples}.append({call})\n"
            f"{ind}except BudgetExhausted:\n"
            f"{ind * 2}if not {samples}:\n"
            f"{ind * 3}raise\n"
            f"{ind * 2}break\n"
            f"{var} = max({samples}, key=lambda sample: "
            f"verify({step.convention.answer_of('sample')}).passed)\n"
        )
        new = _cst.with_leading(_cst.parse_statements(wf, code), step.statement.leading_lines)
        return _cst.replace(wf, {step.statement: cst.FlattenSentinel(new)})
