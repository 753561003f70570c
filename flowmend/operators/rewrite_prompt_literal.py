"""`rewrite-prompt-literal`: replace the text of one step's prompt, keeping what it reads."""

from __future__ import annotations

import builtins
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import libcst as cst

from flowmend.engine._operator import Case, Edits, Reason, Text, check_bounds
from flowmend.engine._siblings import workflow_sibling
from flowmend.engine._workflow import Workflow
from flowmend.operators import _cst, _quote

REWRITABLE = ("literal", "fstring", "concat", "constant", "format")
ROLE_LINE = "You are an expert Python programmer."


@dataclass(frozen=True)
class RewritePromptLiteralArgs:
    text: Annotated[str, Text(1, 4000)]
    """The new prompt; write each placeholder as {expr}, literal braces as {{ and }}."""

    def __post_init__(self) -> None:
        check_bounds(self)


class RewritePromptLiteral(_cst.StepStatementOperator):
    name = "rewrite-prompt-literal"
    kind = "prompt"
    EDITS_PROMPT_TEXT = True
    Args = RewritePromptLiteralArgs
    TEXT_ARG = "text"
    DESCRIPTION = (
        "Replace the text of a step's prompt; every placeholder that reads a variable must stay."
    )
    IDEMPOTENT = True
    EXAMPLES = [
        Case(
            before='''
            def solve(task):
                code = llm(f"Write {task.entry_point}.\\n{task.prompt}")
                return code
            ''',
            args={"text": "Complete this Python function. Reply with code only.\n{task.prompt}\nName: {task.entry_point}"},
            after='''
            def solve(task):
                code = llm(f"Complete this Python function. Reply with code only.\\n{task.prompt}\\nName: {task.entry_point}")
                return code
            ''',
        ),
        Case(
            before='''
            PROMPT = "Write the function."

            def solve(task):
                return llm(PROMPT)
            ''',
            args={"text": "Write the function in Python, code only."},
            after='''
            PROMPT = "Write the function in Python, code only."

            def solve(task):
                return llm(PROMPT)
            ''',
            target={"step": "step1"},
        ),
        Case(
            before='''
            PLAN = "Plan {task}"

            def solve(task):
                plan = llm(PLAN.format(task=task.prompt))
                return llm("Task: {t}\\nPlan: {p}".format(t=task.prompt, p=plan))
            ''',
            args={"text": "Solve {t} by following this plan:\n{p}"},
            target={"step": "step2"},
            after='''
            PLAN = "Plan {task}"

            def solve(task):
                plan = llm(PLAN.format(task=task.prompt))
                return llm("Solve {t} by following this plan:\\n{p}".format(t=task.prompt, p=plan))
            ''',
        ),
    ]
    NOT_APPLICABLE = [
        # A .format template must keep its fields: {p} carries the plan.
        Case(
            before='''
            def solve(task):
                plan = llm(task.prompt)
                return llm("Task: {t}\\nPlan: {p}".format(t=task.prompt, p=plan))
            ''',
            args={"text": "Task: {t}"},
            target={"step": "step2"},
        ),
        # Dropping {plan}, which reads the previous step's output, would cut the data flow.
        Case(
            before='''
            def solve(task):
                plan = llm(f"Plan: {task.prompt}")
                code = llm(f"Follow {plan} for {task.prompt}")
                return code
            ''',
            args={"text": "Solve {task.prompt}"},
            target={"step": "code"},
        ),
        # The constant is shared by two steps: rewriting it would edit both.
        Case(
            before='''
            PROMPT = "Answer briefly."

            def solve(task):
                a = llm(PROMPT)
                b = llm(PROMPT)
                return a + b
            ''',
            args={"text": "Answer."},
            target={"step": "a"},
        ),
        # An opaque prompt (built elsewhere) has no text to rewrite.
        Case(
            before='''
            def solve(task):
                prompt = task.prompt.strip()
                return llm(prompt)
            ''',
            args={"text": "Hi"},
        ),
    ]

    def sites(self, wf: Workflow) -> list[dict]:
        return [
            {"step": s.id}
            for s in wf.steps
            if s.prompt is not None and s.prompt.kind in REWRITABLE and s.prompt.node is not None
        ]

    def presets(self, wf: Workflow, target: dict) -> list[Any]:
        # The optimizer writes the text itself (the engine replaces `text`); the preset is a
        # real edit of its own, the current text under a role line, so that it is never a
        # no-op. Offered only when the text can be written back (placeholders fit an f-string).
        prompt = wf.step(target["step"]).prompt
        text = prompt.text
        if not text or text.startswith(ROLE_LINE) or (prompt.kind != "format" and not all(
            _quote.placeholder_ok(p) for p in prompt.placeholders
        )):
            return []
        if prompt.kind not in ("constant", "format"):
            text = _escape_literal_braces(text, prompt.placeholders)
        try:
            return [self.Args(text=f"{ROLE_LINE}\n{text}")]
        except ValueError:
            return []

    def edit_region(self, wf: Workflow, target: dict, args: Any) -> list[tuple[int, int]]:
        step = wf.step(target["step"])
        if step.prompt.module is not None:
            return []  # the text lives in the sibling module: the workflow stays as it is
        if step.prompt.constant is not None:
            return [_cst.node_lines(wf, _constant_statement(wf, step.prompt.constant)[0])]
        return [_cst.node_lines(wf, step.prompt.node)]

    def transform(self, wf: Workflow, target: dict, args: RewritePromptLiteralArgs) -> cst.Module:
        step = wf.step(target["step"])
        prompt = step.prompt
        if prompt.kind == "format":
            _check_format_fields(prompt, args.text)
        if prompt.module is not None:
            return _rewrite_sibling_constant(wf, step, args.text)
        if prompt.constant is not None:
            statement, value = _constant_statement(wf, prompt.constant)
            uses = [
                a for a in _cst.accesses(wf)
                if isinstance(a.node, cst.Name) and a.node.value == prompt.constant
                and any(getattr(r, "node", None) is not None for r in a.referents)
                and _is_module_binding(wf, a)
            ]
            _cst.require(
                len(uses) == 1, Reason.SHARED_CONSTANT,
                f"constant {prompt.constant} is used {len(uses)} times, not by step {step.id} alone",
            )
            new_value = cst.parse_expression(_quote.render_literal(args.text, like=value))
            return _cst.replace(wf, {value: new_value})
        if prompt.kind == "format":
            # `"template".format(...)`: the template is rewritten, the arguments stay.
            receiver = prompt.node.func.value
            new_receiver = cst.parse_expression(_quote.render_literal(args.text, like=receiver))
            return _cst.replace(wf, {receiver: new_receiver})
        old = [p for p in prompt.placeholders if _reads_variable(wf, step, p)]
        new = _quote.placeholders(args.text)
        dropped = [p for p in old if _norm(p) not in {_norm(n) for n in new}]
        unwritable = [p for p in dropped if not _quote.placeholder_ok(p)]
        _cst.require(
            not dropped, Reason.PLACEHOLDER,
            f"the new text drops placeholder(s) {', '.join('{' + p + '}' for p in dropped)} "
            f"of step {step.id}"
            + (" (a placeholder with a backslash cannot be written in an f-string before "
               "Python 3.12)" if unwritable else ""),
        )
        allowed = _visible_names(wf, step, prompt)
        for expr in new:
            unknown = _names_in(expr) - allowed
            _cst.require(
                not unknown, Reason.PLACEHOLDER,
                f"placeholder {{{expr}}} reads {', '.join(sorted(unknown))}, which step "
                f"{step.id}'s prompt could not read",
            )
        rendered = _quote.render_template(args.text)
        _cst.require(
            rendered is not None, Reason.PLACEHOLDER,
            "no one f-string quoting can hold every placeholder of the new text (mixed quotes)",
        )
        new_prompt = cst.parse_expression(rendered)
        return _cst.replace(wf, {prompt.node: new_prompt})


def _rewrite_sibling_constant(wf: Workflow, step: Any, text: str) -> Edits:
    """The constant rewritten in the sibling module that holds it; the workflow is unchanged."""
    prompt = step.prompt
    users = [s.id for s in wf.steps if s.prompt is not None
             and (s.prompt.module, s.prompt.constant) == (prompt.module, prompt.constant)]
    _cst.require(
        len(users) == 1, Reason.SHARED_CONSTANT,
        f"constant {prompt.constant} of {Path(prompt.module).name} is sent by steps "
        f"{', '.join(users)}, not by step {step.id} alone",
    )
    sibling = workflow_sibling(wf, prompt.module)
    value = sibling.nodes[prompt.constant]
    new_value = cst.parse_expression(_quote.render_literal(text, like=value))
    new_module = sibling.module.deep_replace(value, new_value)
    return Edits(wf.module, {prompt.module: (sibling.source, new_module.code)})


def _format_fields(template: str) -> list[str] | None:
    """Field names of a `str.format` template as the workflow model lists them (None: malformed)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError:
        return None
    return [f or str(i) for i, f in enumerate(fields)]


def _check_format_fields(prompt: Any, text: str) -> None:
    """A `.format` template must keep every field and may only use what the call passes."""
    fields = _format_fields(text)
    _cst.require(fields is not None, Reason.PLACEHOLDER,
                 "the new text is not a valid str.format template (unbalanced braces)")
    dropped = [f for f in prompt.placeholders if f not in fields]
    _cst.require(not dropped, Reason.PLACEHOLDER,
                 f"the new text drops format field(s) {', '.join('{' + f + '}' for f in dropped)}")
    call = prompt.node
    passed = {a.keyword.value for a in call.args if a.keyword is not None}
    passed |= {str(i) for i, a in enumerate(a for a in call.args if a.keyword is None and not a.star)}
    unknown = [f for f in fields if re.split(r"[.\[]", f)[0] not in passed and f not in prompt.placeholders]
    _cst.require(not unknown, Reason.PLACEHOLDER,
                 f"format field(s) {', '.join('{' + f + '}' for f in unknown)} are not passed to .format")


def _escape_literal_braces(text: str, placeholders: tuple[str, ...]) -> str:
    """The engine's template text with its literal braces doubled, so that only the real
    placeholders read as placeholders when the text comes back as an argument."""
    wanted = {_norm(p) for p in placeholders}
    out = []
    for part in _quote.split_template(text):
        if isinstance(part, tuple) and _norm(part[0]) in wanted:
            out.append("{" + part[0] + "}")
        else:
            literal = part if isinstance(part, str) else "{" + part[0] + "}"
            out.append(literal.replace("{", "{{").replace("}", "}}"))
    return "".join(out)


def _norm(expr: str) -> str:
    return "".join(expr.split())


def _names_in(expr: str) -> set[str]:
    node = cst.parse_expression(expr)
    names: set[str] = set()

    class _Collect(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            names.add(n.value)

        def visit_Attribute(self, n: cst.Attribute) -> bool:
            n.value.visit(self)
            return False

    node.visit(_Collect())
    return names


def _visible_names(wf: Workflow, step: Any, prompt: Any) -> set[str]:
    """Names a new placeholder may read: what the prompt read, parameters, module-level names."""
    fn = wf.function(step.function).node
    params = {p.name.value for p in _all_params(fn.params)}
    read = set().union(*(_names_in(p) for p in prompt.placeholders)) if prompt.placeholders else set()
    return read | params | _cst.module_names(wf.module) | set(dir(builtins))


def _all_params(params: cst.Parameters) -> list[cst.Param]:
    out = [*params.posonly_params, *params.params, *params.kwonly_params]
    for p in (params.star_arg, params.star_kwarg):
        if isinstance(p, cst.Param):
            out.append(p)
    return out


def _reads_variable(wf: Workflow, step: Any, placeholder: str) -> bool:
    """Whether a placeholder reads a local variable or parameter (not only globals/builtins)."""
    names = _names_in(placeholder)
    module_level = _cst.module_names(wf.module) | set(dir(builtins))
    return bool(names - module_level) or bool(names & set(step.reads))


def _constant_statement(wf: Workflow, name: str) -> tuple[cst.SimpleStatementLine, cst.BaseExpression]:
    for stmt in wf.module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, (cst.Assign, cst.AnnAssign)):
                    targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target]
                    if any(isinstance(t, cst.Name) and t.value == name for t in targets):
                        return stmt, small.value
    raise LookupError(f"constant {name} not found")


def _is_module_binding(wf: Workflow, access: Any) -> bool:
    from libcst.metadata import GlobalScope

    return any(isinstance(getattr(r, "scope", None), GlobalScope) for r in access.referents)
