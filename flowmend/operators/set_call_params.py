"""`set-call-params`: set the sampling parameters (temperature, max_tokens, n, model) of one step."""

from __future__ import annotations

import ast
from dataclasses import dataclass, fields
from typing import Annotated, Any, Optional

import libcst as cst

from flowmend.engine._operator import ArgsError, Between, Case, Reason, Text, check_bounds
from flowmend.engine._workflow import Workflow
from flowmend.operators import _cst, _quote


@dataclass(frozen=True)
class SetCallParamsArgs:
    temperature: Optional[Annotated[float, Between(0.0, 2.0)]] = None
    """Sampling temperature (0 to 2); unset keeps the step's own."""
    max_tokens: Optional[Annotated[int, Between(1, 8192)]] = None
    """Most tokens the step may generate (1 to 8192); unset keeps the step's own."""
    n: Optional[Annotated[int, Between(1, 16)]] = None
    """Completions per call (1 to 16; above 1 the call returns a list); unset keeps the step's own."""
    model: Optional[Annotated[str, Text(1, 200, one_line=True)]] = None
    """Model name for this step; unset keeps the step's own."""

    def __post_init__(self) -> None:
        check_bounds(self)
        if all(getattr(self, f.name) is None for f in fields(self)):
            raise ArgsError("set at least one of temperature, max_tokens, n, model")


class SetCallParams(_cst.StepStatementOperator):
    name = "set-call-params"
    # Sampling parameters are not prompt text: "prompt-only" refinement (mode prompt, the b2
    # baseline) must change what a step says, never how often or how hot it samples.
    kind = "structure"
    Args = SetCallParamsArgs
    DESCRIPTION = "Set temperature, max_tokens, n or the model name of one step's call."
    IDEMPOTENT = True
    CONVENTION_PARAMS = ("temperature", "max_tokens", "n", "model")
    EXAMPLES = [
        Case(
            before='''
            def solve(task):
                code = llm(task.prompt, temperature=0.0)
                return code
            ''',
            args={"temperature": 0.7, "max_tokens": 512},
            after='''
            def solve(task):
                code = llm(task.prompt, temperature=0.7, max_tokens=512)
                return code
            ''',
        ),
        Case(
            before='''
            def solve(task):
                code = llm(
                    task.prompt,
                    temperature=0.2,
                )
                return code
            ''',
            args={"model": "gemma3-270m"},
            after='''
            def solve(task):
                code = llm(
                    task.prompt,
                    temperature=0.2,
                    model="gemma3-270m",
                )
                return code
            ''',
        ),
    ]
    NOT_APPLICABLE = [
        # `**params` may already carry the keyword; setting it again would fail at run time.
        Case(
            before='''
            def solve(task, **params):
                return llm(task.prompt, **params)
            ''',
            args={"temperature": 0.5},
        ),
    ]

    def sites(self, wf: Workflow) -> list[dict]:
        return [{"step": s.id} for s in wf.steps if not any(a.star == "**" for a in s.call.args)
                and any(_cst.accepts(s, f.name) for f in fields(self.Args))]

    def presets(self, wf: Workflow, target: dict) -> list[Any]:
        # A preset that sets what the call already has would change nothing, and one the
        # callee does not take would fail when run: leave both out.
        step = wf.step(target["step"])
        current = dict(step.params)
        presets = [
            self.Args(temperature=0.0),
            self.Args(temperature=0.7),
            self.Args(max_tokens=512),
            self.Args(max_tokens=1024),
        ]
        return [
            p for p in presets
            if not any(_same(current.get(f.name), getattr(p, f.name)) for f in fields(p)
                       if getattr(p, f.name) is not None)
            and all(_cst.accepts(step, name) for name in _set(p))
        ]

    def edit_region(self, wf: Workflow, target: dict, args: Any) -> list[tuple[int, int]]:
        return [_cst.node_lines(wf, wf.step(target["step"]).call)]

    def transform(self, wf: Workflow, target: dict, args: SetCallParamsArgs) -> cst.Module:
        step = wf.step(target["step"])
        refused = [name for name in _set(args) if not _cst.accepts(step, name)]
        _cst.require(not refused, Reason.CONVENTION,
                     f"step {step.id}'s callee takes no {', '.join(refused)} (convention "
                     f"{step.convention.name!r} accepts "
                     f"{', '.join(step.convention.params or ()) or 'no parameters'})")
        call = step.call
        new = call
        for f in fields(args):
            value = getattr(args, f.name)
            if value is not None:
                new = _cst.set_keyword(new, f.name, cst.parse_expression(_literal(value)))
        return _cst.replace(wf, {call: new})


def _set(args: Any) -> list[str]:
    """The parameters an argument value sets."""
    return [f.name for f in fields(args) if getattr(args, f.name) is not None]


def _same(source: str | None, value: Any) -> bool:
    """Whether a keyword's source text already means `value`."""
    if source is None:
        return False
    try:
        return ast.literal_eval(source) == value
    except (ValueError, SyntaxError):
        return False


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return _quote.render_literal(value)
    return repr(value)
