"""libcst helpers shared by the operators: step-statement sites, fresh names, prompt threading,
and one identity-keyed replacement per application. Quoting prompt text is in `_quote.py`."""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Union

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ScopeProvider

from flowmend.engine._operator import Operator, Reason, Refusal
from flowmend.engine._workflow import Workflow
from flowmend.operators._quote import fstring_text

Replacement = Union[cst.CSTNode, cst.FlattenSentinel, cst.RemovalSentinel]


# --- sites -------------------------------------------------------------------------------------


# `target = [await] call(...)` and `[await] call(...)`, alone on their line: the statements that
# structure edits can move, wrap, copy or delete. Most need the target to be a plain name.
STEP_CALL = m.Call() | m.Await(expression=m.Call())
STEP_ASSIGN = m.Assign(targets=[m.AssignTarget(target=m.Name())], value=STEP_CALL)
STEP_STATEMENT = m.SimpleStatementLine(
    body=[m.Assign(targets=[m.AssignTarget()], value=STEP_CALL) | m.Expr(value=STEP_CALL)]
)


def assigned_call(statement: cst.CSTNode | None, call: cst.Call) -> cst.Assign | cst.Expr | None:
    """The statement's only small statement when it is ``x = [await] call`` or ``[await] call``."""
    if statement is None or not m.matches(statement, STEP_STATEMENT):
        return None
    small = statement.body[0]
    inner = small.value.expression if isinstance(small.value, cst.Await) else small.value
    return small if inner is call else None


def assigned_name(step: Any) -> str | None:
    """The plain variable a step assigns (``code = llm(...)``), else None."""
    small = assigned_call(step.statement, step.call)
    if small is not None and m.matches(small, STEP_ASSIGN):
        return small.targets[0].target.value
    return None


def assign_steps(wf: Workflow) -> list[Any]:
    """Steps written as ``name = [await] call(...)``, alone on their line."""
    return [s for s in wf.steps if assigned_name(s) is not None]


# --- the text answer, as the step's convention reads it -------------------------------------


def result_target(step: Any) -> str | None:
    """The target of ``target = [await] call(...)`` as source: a name (``code``) or a tuple of
    names (``thinking, answer``); None for any other statement."""
    small = assigned_call(step.statement, step.call)
    if not isinstance(small, cst.Assign):
        return None
    target = small.targets[0].target
    if isinstance(target, cst.Name):
        return target.value
    names = _tuple_names(target)
    return ", ".join(names) if names else None


def _tuple_names(target: cst.CSTNode) -> list[str] | None:
    if not isinstance(target, (cst.Tuple, cst.List)):
        return None
    names = [e.value.value for e in target.elements
             if isinstance(e, cst.Element) and isinstance(e.value, cst.Name)]
    return names if len(names) == len(target.elements) else None


def target_names(step: Any) -> set[str]:
    """The names the step's statement assigns (both of ``thinking, answer = ...``)."""
    target = result_target(step)
    return set(target.split(", ")) if target else set()


def answer_of(step: Any) -> str | None:
    """Source reading the step's text answer through its convention's accessor: ``code``,
    ``solution['response']``, ``reply.content``, or the N-th name of a tuple target; None when
    the statement has no target it can be read from."""
    small = assigned_call(step.statement, step.call)
    if not isinstance(small, cst.Assign):
        return None
    target = small.targets[0].target
    convention = step.convention
    if isinstance(target, cst.Name):
        return convention.answer_of(target.value)
    names = _tuple_names(target)
    item = convention.answer_item
    if names and item is not None and item < len(names):
        return names[item]
    return None


def answer_variable(step: Any) -> str | None:
    """The variable the text answer is read from (``solution`` for ``solution['response']``)."""
    answer = answer_of(step)
    return answer.split("[", 1)[0].split(".", 1)[0] if answer is not None else None


def answer_steps(wf: Workflow) -> list[Any]:
    """Steps written as ``target = [await] call(...)`` alone on their line, whose text answer
    their convention can read."""
    return [s for s in wf.steps if answer_of(s) is not None]


def accepts(step: Any, param: str) -> bool:
    """Whether the step's callee takes keyword `param` (its convention says)."""
    return step.convention.accepts(param)


def convention_refusal(wf: Workflow, target: dict, *params: str) -> Refusal | None:
    """Why an operator cannot keep the convention of the step at `target`: its callee takes
    none of `params`, or its text answer cannot be read (a tuple target and no ``item:N``
    answer); None when neither holds."""
    try:
        step = wf.step(target.get("step"))
    except (KeyError, TypeError):
        return None
    convention = step.convention
    if params and not any(convention.accepts(p) for p in params):
        return Refusal(Reason.CONVENTION,
                       f"step {step.id}'s callee takes no {' or '.join(params)} (convention "
                       f"{convention.name!r} accepts "
                       f"{', '.join(convention.params or ()) or 'no parameters'})")
    if result_target(step) is not None and answer_of(step) is None:
        return Refusal(Reason.CONVENTION,
                       f"step {step.id} assigns a tuple and convention {convention.name!r} "
                       "names no item:N answer, so its text answer cannot be read")
    return None


def parent(wf: Workflow, node: cst.CSTNode) -> cst.CSTNode | None:
    """The node's parent in the workflow's module (None for the module itself)."""
    return wf.parent(node)


def block_of(wf: Workflow, statement: cst.CSTNode) -> tuple[cst.CSTNode, int]:
    """The block (`IndentedBlock` or `Module`) holding `statement`, and its index there."""
    parent_node = parent(wf, statement)
    for i, stmt in enumerate(parent_node.body):
        if stmt is statement:
            return parent_node, i
    raise LookupError("statement not found in its parent block")


def step_function(wf: Workflow, step: Any) -> cst.FunctionDef:
    return wf.function(step.function).node


# --- regions -----------------------------------------------------------------------------------


def node_lines(wf: Workflow, node: cst.CSTNode) -> tuple[int, int]:
    """Lines of a node; for a statement, its leading comment and blank lines included."""
    pos = wf.position(node)
    start = pos.start.line - len(getattr(node, "leading_lines", ()))
    return start, pos.end.line


def step_statement_region(wf: Workflow, step_id: str) -> list[tuple[int, int]]:
    step = wf.step(step_id)
    return [node_lines(wf, step.statement if step.statement is not None else step.call)]


class StepStatementOperator(Operator):
    """An operator whose edit stays inside one step's statement (or call, when it has none).

    When a target is not a site because of the step's convention, the refusal says so: the
    callee takes none of `CONVENTION_PARAMS` (when set), or the text answer cannot be read.
    """

    CONVENTION_PARAMS: tuple[str, ...] = ()

    def why_not(self, wf: Workflow, target: dict) -> Refusal | None:
        return convention_refusal(wf, target, *self.CONVENTION_PARAMS)

    def edit_region(self, wf: Workflow, target: dict, args: Any) -> list[tuple[int, int]]:
        return step_statement_region(wf, target["step"])


# --- names -------------------------------------------------------------------------------------


def used_names(module: cst.Module) -> set[str]:
    """Every identifier written anywhere in the module (variables, attributes, keywords)."""
    names: set[str] = set()

    class _Collect(cst.CSTVisitor):
        def visit_Name(self, node: cst.Name) -> None:
            names.add(node.value)

    module.visit(_Collect())
    return names


def fresh_name(wf: Workflow, base: str, taken: Iterable[str] = ()) -> str:
    """`base`, or `base2`, `base3`, ... : the first that appears nowhere in the module."""
    taken = set(taken) | cached(wf, "used names", lambda: used_names(wf.module))
    if base not in taken:
        return base
    n = 2
    while f"{base}{n}" in taken:
        n += 1
    return f"{base}{n}"


def reads_in(wf: Workflow, node: cst.CSTNode, name: str) -> list[cst.Name]:
    """The `Name` nodes inside `node` that read variable `name` (nested scopes included)."""
    return [n for n in _reads_within(wf, node) if n.value == name]


def names_read(wf: Workflow, node: cst.CSTNode) -> set[str]:
    """Every variable name read inside `node`."""
    return {n.value for n in _reads_within(wf, node)}


def _reads_within(wf: Workflow, node: cst.CSTNode) -> list[cst.Name]:
    positions, names = _read_index(wf)
    span = wf.position(node)
    lo = bisect.bisect_left(positions, (span.start.line, span.start.column))
    hi = bisect.bisect_right(positions, (span.end.line, span.end.column))
    return names[lo:hi]


def _read_index(wf: Workflow) -> tuple[list[tuple[int, int]], list[cst.Name]]:
    """Every name read in the module (scope analysis, once), sorted by position."""

    def build():
        entries = sorted(
            ((wf.position(a.node).start.line, wf.position(a.node).start.column), id(a.node), a.node)
            for a in accesses(wf) if isinstance(a.node, cst.Name)
        )
        return [e[0] for e in entries], [e[2] for e in entries]

    return cached(wf, "read index", build)


def accesses(wf: Workflow) -> list:
    """Every access (read of a name) the scope analysis finds in the module."""

    def build():
        scopes = wf.metadata(ScopeProvider)
        return [a for s in {s for s in scopes.values() if s is not None} for a in s.accesses]

    return cached(wf, "accesses", build)


def module_names(module: cst.Module) -> set[str]:
    """Names bound at module level: imports, functions, classes, assignments."""
    names: set[str] = set()
    for stmt in module.body:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            names.add(stmt.name.value)
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.Assign):
                    for t in small.targets:
                        if isinstance(t.target, cst.Name):
                            names.add(t.target.value)
                elif isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name):
                    names.add(small.target.value)
                elif isinstance(small, (cst.Import, cst.ImportFrom)) and not isinstance(
                    small.names, cst.ImportStar
                ):
                    for alias in small.names:
                        bound = alias.asname.name if alias.asname else alias.name
                        while isinstance(bound, cst.Attribute):
                            bound = bound.value
                        if isinstance(bound, cst.Name):
                            names.add(bound.value)
    return names


# --- the one transform -------------------------------------------------------------------------


def replace(wf: Workflow, mapping: Mapping[cst.CSTNode, Replacement]) -> cst.Module:
    """One edit of the workflow's module, replacing nodes by identity (a node, several
    statements, or none); only the edited nodes' ancestors are rebuilt."""
    return wf.replace(mapping)


STEP_SLOT = "__flowmend_step__"


def parse_statements(wf: Workflow, code: str, slot: cst.BaseStatement | None = None) -> list[cst.BaseStatement]:
    """Statements from source text, indented like the workflow's module.

    A line holding only `STEP_SLOT` is replaced by the statement `slot` (the original node,
    its leading lines dropped), so its text, multi-line strings included, is never re-indented.
    """
    # The module rebuilds its parser config on every access: build it once per workflow.
    config = wf.cached("config for parsing", lambda: wf.module.config_for_parsing)
    body = list(cst.parse_module(code, config=config).body)
    if slot is None:
        return body
    own = slot.with_changes(leading_lines=())
    return [_fill_slot(stmt, own) for stmt in body]


# What may hold a statement; a slot is looked for in these only, not in every expression.
_HOLDS_STATEMENTS = (cst.BaseCompoundStatement, cst.BaseSuite, cst.Else, cst.ExceptHandler,
                     cst.ExceptStarHandler, cst.Finally, cst.MatchCase)


def _fill_slot(node: cst.CSTNode, own: cst.BaseStatement) -> cst.CSTNode:
    """`node` with every `STEP_SLOT` statement in it replaced by `own`."""
    if isinstance(node, cst.SimpleStatementLine):
        small = node.body
        is_slot = len(small) == 1 and isinstance(small[0], cst.Expr) and \
            isinstance(small[0].value, cst.Name) and small[0].value.value == STEP_SLOT
        return own if is_slot else node
    if not isinstance(node, _HOLDS_STATEMENTS):
        return node
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, cst.CSTNode):
            new = _fill_slot(value, own)
            if new is not value:
                changes[f.name] = new
        elif isinstance(value, (tuple, list)) and any(isinstance(v, cst.CSTNode) for v in value):
            items = [_fill_slot(v, own) if isinstance(v, cst.CSTNode) else v for v in value]
            if any(a is not b for a, b in zip(items, value)):
                changes[f.name] = type(value)(items)
    return node.with_changes(**changes) if changes else node


def with_leading(statements: list[cst.BaseStatement], leading: Any) -> list[cst.BaseStatement]:
    """Give the first statement the comment and blank lines that preceded the one it replaces."""
    return [statements[0].with_changes(leading_lines=leading), *statements[1:]]


def code_of(wf: Workflow, node: cst.CSTNode) -> str:
    return wf.module.code_for_node(node)


def call_expr(step: Any, wf: Workflow, prompt_code: str, *, drop: Iterable[str] = ("n",),
              overrides: Mapping[str, str] | None = None) -> str:
    """Source of a new call to the step's model: same callee and other arguments, new prompt
    where the step's convention puts it (by default first; else at its own position or
    keyword, the other positional arguments kept).

    `drop` names keyword arguments not to copy (``n`` would return several samples);
    `overrides` sets keyword arguments to source text.
    """
    overrides = dict(overrides or {})
    drop = set(drop)
    own = step.convention.prompt is None
    at_call = step.prompt.call_node if step.prompt is not None else None
    parts = [prompt_code] if own else []
    for arg in step.call.args:
        if not own and arg.value is at_call:
            parts.append(f"{arg.keyword.value}={prompt_code}" if arg.keyword else prompt_code)
            continue
        if arg.keyword is None:
            if not own:
                parts.append(code_of(wf, arg.value))  # the other positionals as written
            continue
        if (own and arg.keyword.value == "prompt") or arg.keyword.value in drop:
            continue
        key = arg.keyword.value
        value = overrides.pop(key) if key in overrides else code_of(wf, arg.value)
        parts.append(f"{key}={value}")
    parts.extend(f"{k}={v}" for k, v in overrides.items())
    text = f"{code_of(wf, step.call.func)}({', '.join(parts)})"
    return f"await {text}" if step.awaited else text


def set_keyword(call: cst.Call, key: str, value: cst.BaseExpression) -> cst.Call:
    """The call with keyword `key` set to `value` (replaced in place, or appended)."""
    args = list(call.args)
    for i, arg in enumerate(args):
        if arg.keyword is not None and arg.keyword.value == key:
            args[i] = arg.with_changes(value=value)
            return call.with_changes(args=args)
    equal = cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace(""))
    new = cst.Arg(value=value, keyword=cst.Name(key), equal=equal)
    if args and isinstance(args[-1].comma, cst.Comma):
        # A trailing comma stays trailing: the new argument takes it, and the old last argument
        # gets the separator its predecessor uses (a newline and indentation in a tall call).
        last_comma = args[-1].comma
        previous = args[-2].comma if len(args) > 1 else None
        separator = previous.whitespace_after if isinstance(previous, cst.Comma) else cst.SimpleWhitespace(" ")
        args[-1] = args[-1].with_changes(
            comma=cst.Comma(whitespace_before=last_comma.whitespace_before, whitespace_after=separator)
        )
        new = new.with_changes(comma=last_comma)
    args.append(new)
    return call.with_changes(args=args)


def keyword_value(call: cst.Call, key: str) -> cst.BaseExpression | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == key:
            return arg.value
    return None


# --- threading step outputs into prompts ----------------------------------------------------


_TIGHT_BINARY = (cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.FloorDivide, cst.Modulo,
                 cst.MatrixMultiply, cst.Power)


def binds_tighter_than_add(node: cst.BaseExpression) -> bool:
    if getattr(node, "lpar", None):
        return True
    if isinstance(node, cst.BinaryOperation):
        return isinstance(node.operator, _TIGHT_BINARY)
    if isinstance(node, cst.UnaryOperation):
        return not isinstance(node.operator, cst.Not)
    return not isinstance(
        node, (cst.IfExp, cst.Lambda, cst.BooleanOperation, cst.Comparison, cst.NamedExpr,
               cst.Yield, cst.StarredElement)
    )


def thread(prompt: cst.BaseExpression, label: str, name: str) -> cst.BinaryOperation:
    """``prompt + f"\\n\\n<label>:\\n{name}"``: feed a variable into a prompt."""
    suffix = cst.parse_expression('f"\\n\\n' + fstring_text(label) + ':\\n{' + name + '}"')
    return cst.BinaryOperation(
        left=prompt,
        operator=cst.Add(cst.SimpleWhitespace(" "), cst.SimpleWhitespace(" ")),
        right=suffix,
    )


def threaded_name(node: cst.CSTNode) -> str | None:
    """The variable a `thread` suffix feeds, when `node` is ``expr + f"\\n\\n...:\\n{name}"``
    (or ``{name['key']}``, ``{name.attr}``, ``{name[N]}``: the answer a convention reads)."""
    if not (isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add)):
        return None
    right = node.right
    if not isinstance(right, cst.FormattedString) or len(right.parts) != 2 or right.lpar:
        return None
    text, expr = right.parts
    if not (isinstance(text, cst.FormattedStringText) and text.value.startswith("\\n\\n")
            and text.value.endswith(":\\n")):
        return None
    if not (isinstance(expr, cst.FormattedStringExpression)
            and m.matches(expr.expression, _ANSWER_OF_NAME)
            and expr.conversion is None and expr.format_spec is None):
        return None
    return _root(expr.expression)


def require(condition: bool, reason: Reason, detail: str) -> None:
    """Refuse (not applicable) unless `condition` holds."""
    if not condition:
        raise Refusal(reason, detail)


# --- steps that yield code ---------------------------------------------------------------------

_CODE_WORDS = ("code", "solution", "program", "impl", "completion", "answer", "draft", "src")


def cached(wf: Workflow, key: Any, compute) -> Any:
    """A value derived from the workflow, computed once per workflow."""
    return wf.cached(("flowmend.operators", key), compute)


def yields_code(wf: Workflow, step: Any) -> bool:
    """Whether a step's output is code: its name says so, or the function returns it as is or
    hands it to ``extract_code``/``verify``."""
    return cached(wf, ("yields_code", step.id), lambda: _yields_code(wf, step))


def _yields_code(wf: Workflow, step: Any) -> bool:
    name = answer_variable(step)
    if name is None:
        return False
    if any(word in name.lower() for word in _CODE_WORDS):
        return True
    answer = answer_of(step).replace('"', "'")
    return answer in cached(wf, ("code names", step.function), lambda: _code_names(wf, step))


# What makes a variable code: the function returns it as is (or its answer: `r['response']`,
# `r.content`), or checks or extracts it.
_ANSWER_OF_NAME = m.Name() | m.Subscript(value=m.Name()) | m.Attribute(value=m.Name())
RETURNED = m.Return(value=_ANSWER_OF_NAME)
CHECKED = m.Call(func=m.Name("extract_code") | m.Name("verify"))


def _code_names(wf: Workflow, step: Any) -> set[str]:
    """What a function returns as is or passes to ``extract_code``/``verify``: names, and
    ``name['key']``/``name.attr``/``name[N]`` answers, as source text (one pass)."""
    names: set[str] = set()

    def add(node: cst.BaseExpression) -> None:
        names.add(code_of(wf, node).replace('"', "'"))

    class _Collect(cst.CSTVisitor):
        def visit_Return(self, node: cst.Return) -> None:
            if m.matches(node, RETURNED):
                add(node.value)

        def visit_Call(self, node: cst.Call) -> None:
            if m.matches(node, CHECKED):
                for a in node.args:
                    if m.matches(a.value, _ANSWER_OF_NAME):
                        add(a.value)

    step_function(wf, step).body.visit(_Collect())
    return names


def _root(node: cst.BaseExpression) -> str:
    return node.value if isinstance(node, cst.Name) else node.value.value


def next_statement(wf: Workflow, statement: cst.CSTNode) -> cst.CSTNode | None:
    block, i = block_of(wf, statement)
    return block.body[i + 1] if i + 1 < len(block.body) else None


def verified_right_after(wf: Workflow, step: Any) -> bool:
    """Whether the statement after the step already calls ``verify`` on its output."""
    nxt = next_statement(wf, step.statement)
    if nxt is None:
        return False
    answer = answer_of(step)
    return any(code_of(wf, c.args[0].value) == answer for c in m.findall(
        nxt, m.Call(func=m.Name("verify"), args=[m.Arg()])))


def plain_call(step: Any) -> bool:
    """A call `call_expr` can copy: a prompt, no ``*``/``**``, and no extra positionals unless
    the step's convention says where the prompt is among them."""
    positional = [a for a in step.call.args if a.keyword is None]
    return step.prompt is not None and not any(a.star for a in step.call.args) and (
        len(positional) <= 1 or step.convention.prompt is not None)


def code_step_sites(wf: Workflow) -> list[dict]:
    """Steps that yield code and are not already checked by the statement after them."""
    return [
        {"step": s.id}
        for s in answer_steps(wf)
        if plain_call(s) and yields_code(wf, s) and not verified_right_after(wf, s)
    ]


def _find(node: cst.CSTNode, types: tuple) -> list:
    found = []

    class _Collect(cst.CSTVisitor):
        def on_visit(self, n: cst.CSTNode) -> bool:
            if isinstance(n, types):
                found.append(n)
            return True

    node.visit(_Collect())
    return found


def find(node: cst.CSTNode, *types: type) -> list:
    """Every node of the given types inside `node` (itself included), in source order."""
    return _find(node, types)


def indent(wf: Workflow) -> str:
    """One level of the workflow's own indentation."""
    return wf.module.default_indent


def repair_prompt(instruction: str, check: str, var: str) -> str:
    """Source of a repair prompt: the instruction, the check's kind and feedback, the code."""
    return (
        f'f"{fstring_text(instruction)}\\n\\nCheck ({{{check}.kind}}):\\n'
        f'{{{check}.feedback}}\\n\\nCode:\\n{{{var}}}"'
    )
