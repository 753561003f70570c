"""`append-instruction`: add one sentence at the end of a step's prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import libcst as cst

from flowmend.engine._operator import Case, Text, check_bounds
from flowmend.engine._workflow import Workflow
from flowmend.operators import _cst, _quote

PRESET_SENTENCES = (
    "Reply with a single Python code block and nothing else.",
    "Think about edge cases (empty input, negative numbers, duplicates) before writing code.",
    "Keep the exact function name and signature from the task.",
)


@dataclass(frozen=True)
class AppendInstructionArgs:
    sentence: Annotated[str, Text(1, 500, one_line=True)]
    """The sentence to add, on a new line after the prompt's text."""

    def __post_init__(self) -> None:
        check_bounds(self)


class AppendInstruction(_cst.StepStatementOperator):
    name = "append-instruction"
    kind = "prompt"
    EDITS_PROMPT_TEXT = True
    Args = AppendInstructionArgs
    DESCRIPTION = "Append one instruction sentence, on a new line, to the end of a step's prompt."
    EXAMPLES = [
        Case(
            before='''
            def solve(task):
                code = llm(f"Write {task.entry_point}:\\n{task.prompt}")  # the only step
                return code
            ''',
            args={"sentence": "Reply with code only."},
            after='''
            def solve(task):
                code = llm(f"Write {task.entry_point}:\\n{task.prompt}\\nReply with code only.")  # the only step
                return code
            ''',
        ),
        Case(
            before='''
            async def solve(task):
                prompt = task.prompt
                return await llm(prompt, temperature=0)
            ''',
            args={"sentence": "Use {braces} literally."},
            after='''
            async def solve(task):
                prompt = task.prompt
                return await llm(prompt + "\\nUse {braces} literally.", temperature=0)
            ''',
        ),
    ]
    NOT_APPLICABLE = [
        # No prompt argument at all: nothing to append to.
        Case(
            before='''
            def solve(task):
                return llm()
            ''',
            args={"sentence": "Be brief."},
        ),
    ]

    def sites(self, wf: Workflow) -> list[dict]:
        return [
            {"step": s.id}
            for s in wf.steps
            if s.prompt is not None and s.prompt.node is not None and not _is_bytes(s.prompt.node)
        ]

    def presets(self, wf: Workflow, target: dict) -> list[Any]:
        return [self.Args(sentence=s) for s in PRESET_SENTENCES]

    def edit_region(self, wf: Workflow, target: dict, args: Any) -> list[tuple[int, int]]:
        return [_cst.node_lines(wf, wf.step(target["step"]).prompt.node)]

    def transform(self, wf: Workflow, target: dict, args: AppendInstructionArgs) -> cst.Module:
        node = wf.step(target["step"]).prompt.node
        addition = "\n" + args.sentence
        new = _quote.append_to_string(node, addition)
        if new is None:
            left = node if _cst.binds_tighter_than_add(node) else node.with_changes(
                lpar=[cst.LeftParen()], rpar=[cst.RightParen()]
            )
            new = cst.BinaryOperation(
                left=left,
                operator=cst.Add(cst.SimpleWhitespace(" "), cst.SimpleWhitespace(" ")),
                right=cst.parse_expression(_quote.render_literal(addition)),
            )
        return _cst.replace(wf, {node: new})


def _is_bytes(node: cst.CSTNode) -> bool:
    if isinstance(node, (cst.SimpleString, cst.FormattedString)):
        return "b" in node.prefix.lower()
    if isinstance(node, cst.ConcatenatedString):
        return _is_bytes(node.left)
    return False
