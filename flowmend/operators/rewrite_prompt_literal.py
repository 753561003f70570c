"""`rewrite-prompt-literal`: replace the text of one step's prompt, keeping what it reads."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Annotated, Any

import libcst as cst

from flowmend.engine._operator import Case, Reason, Text, check_bounds, register
from flowmend.operators import _cst

REWRITABLE = ("literal", "fstring", "concat", "constant")
ROLE_LINE = "You are an expert Python programmer."


@dataclass(frozen=True)
class RewritePromptLiteralArgs:
    text: Annotated[str, Text(1, 4000)]
    """The new prompt; write each placeholder as {expr}, literal braces as {{ and }}."""

    def __post_init__(self) -> None:
        check_bounds(self)


@register
class RewritePromptLiteral(_cst.StepStatementOperator):
    name = "rewrite-prompt-literal"
    kind = "prompt"
    Args = RewritePromptLiteralArgs
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
    ]
    NOT_APPLICABLE = [
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

    def sites(self, wf: Any) -> list[dict]:
        return [
            {"step": s.id}
            for s in wf.steps
            if s.prompt is not None and s.prompt.kind in REWRITABLE and s.prompt.node is not None
        ]

    def presets(self, wf: Any, target: dict) -> list[Any]:
        # The optimizer writes the text itself (the engine replaces `text`); the preset is a
        # real edit of its own, the current text under a role line, so that it is never a
        # no-op. Offered only when the text can be written back (placeholders fit an f-string).
        prompt = wf.step(target["step"]).prompt
        text = prompt.text
        if not text or text.startswith(ROLE_LINE) or not all(
            _cst.placeholder_ok(p) for p in prompt.placeholders
        ):
            return []
        if prompt.kind != "constant":
            text = _escape_literal_braces(text, prompt.placeholders)
        try:
            return [self.Args(text=f"{ROLE_LINE}\n{text}")]
        except ValueError:
            return []

    def edit_region(self, wf: Any, target: dict, args: Any) -> list[tuple[int, int]]:
        step = wf.step(target["step"])
        if step.prompt.kind == "constant":
            return [_cst.node_lines(wf, _constant_statement(wf, step.prompt.constant)[0])]
        return [_cst.node_lines(wf, step.prompt.node)]

    def transform(self, wf: Any, target: dict, args: RewritePromptLiteralArgs) -> cst.Module:
        step = wf.step(target["step"])
        prompt = step.prompt
        if prompt.kind == "constant":
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
            new_value = cst.parse_expression(_cst.render_literal(args.text))
            return _cst.replace(wf, {value: new_value})
        old = [p for p in prompt.placeholders if _reads_variable(wf, step, p)]
        new = _cst.placeholders(args.text)
        dropped = [p for p in old if _norm(p) not in {_norm(n) for n in new}]
        unwritable = [p for p in dropped if not _cst.placeholder_ok(p)]
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
        rendered = _cst.render_template(args.text)
        _cst.require(
            rendered is not None, Reason.PLACEHOLDER,
            "no one f-string quoting can hold every placeholder of the new text (mixed quotes)",
        )
        new_prompt = cst.parse_expression(rendered)
        return _cst.replace(wf, {prompt.node: new_prompt})


def _escape_literal_braces(text: str, placeholders: tuple[str, ...]) -> str:
    """The engine's template text with its literal braces doubled, so that only the real
    placeholders read as placeholders when the text comes back as an argument."""
    wanted = {_norm(p) for p in placeholders}
    out = []
    for part in _cst.split_template(text):
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


def _visible_names(wf: Any, step: Any, prompt: Any) -> set[str]:
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


def _reads_variable(wf: Any, step: Any, placeholder: str) -> bool:
    """Whether a placeholder reads a local variable or parameter (not only globals/builtins)."""
    names = _names_in(placeholder)
    module_level = _cst.module_names(wf.module) | set(dir(builtins))
    return bool(names - module_level) or bool(names & set(step.reads))


def _constant_statement(wf: Any, name: str) -> tuple[cst.SimpleStatementLine, cst.BaseExpression]:
    for stmt in wf.module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, (cst.Assign, cst.AnnAssign)):
                    targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target]
                    if any(isinstance(t, cst.Name) and t.value == name for t in targets):
                        return stmt, small.value
    raise LookupError(f"constant {name} not found")


def _is_module_binding(wf: Any, access: Any) -> bool:
    from libcst.metadata import GlobalScope

    return any(isinstance(getattr(r, "scope", None), GlobalScope) for r in access.referents)
