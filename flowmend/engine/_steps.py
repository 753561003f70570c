"""Reading a workflow's steps and prompts: which functions the entry reaches, which calls are
steps, what each step's prompt says and reads, and the steps' stable ids."""

from __future__ import annotations

import builtins
import dataclasses
import string
from pathlib import Path
from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst

from flowmend.engine._convention import Convention, callee_name, convention_for
from flowmend.engine._cstutil import (
    assignments, bound_names, dedupe, dotted_name, names_read, param_names, self_param,
)
from flowmend.engine._dataflow import DataFlow, origin_step
from flowmend.engine._siblings import (Sibling, sibling_imports, sibling_path,
                                       string_constants, workflow_sibling)
from flowmend.engine._workflow import Function, Prompt, Step, Workflow, WorkflowError, _Model
from flowmend.errors import UserError

_BUILTINS = frozenset(dir(builtins))
# Calls whose presence makes a function's data flow impossible to follow by reading it.
_DYNAMIC_CALLS = frozenset({"eval", "exec", "locals", "globals", "vars", "setattr", "getattr"})


class Modeller:
    def __init__(self, wf: Workflow, where: str):
        self.where = where
        self.wf = wf
        self.module: cst.Module = wf.module
        self.positions = wf.positions
        self.entry = wf.entry
        self.callees = wf.step_callees
        self.conventions = wf.conventions
        self.strict = False
        self.functions: dict[str, tuple[cst.FunctionDef, str | None]] = {}
        self.classes: dict[str, cst.ClassDef] = {}
        self.class_bases: dict[str, tuple[str, ...]] = {}
        self.constants: dict[str, str] = {}
        self.constant_nodes: dict[str, cst.BaseExpression] = {}
        self._facts: dict[str, Facts] = {}
        self._index_module()

    def facts(self, qualname: str) -> Facts:
        if qualname not in self._facts:
            self._facts[qualname] = function_facts(self.functions[qualname][0])
        return self._facts[qualname]

    def instances(self, qualname: str) -> dict[str, str]:
        """Local variables that hold an instance of a module class (``flow = Flow()``)."""
        found: dict[str, str] = {}
        for target, value in self.facts(qualname).assignments:
            if isinstance(target, cst.Name) and isinstance(value, cst.Call):
                ctor = dotted_name(value.func)
                if ctor in self.classes:
                    found[target.value] = ctor
        return found

    def line(self, node: cst.CSTNode) -> int:
        return self.positions[node].start.line

    def prompt_variable(self, qualname: str, name: str, call: cst.Call) -> cst.BaseExpression | str | None:
        """The string a local prompt variable holds: the value of its one assignment before
        `call` in the function; a reason (str) when it is a string assigned more than once,
        so the prompt is refused rather than guessed; None when it holds no string."""
        facts = self.facts(qualname)
        values = [v for t, v in facts.assignments if isinstance(t, cst.Name) and t.value == name]
        if not any(_is_string(v) for v in values):
            return None
        lines = sorted(self.line(v) for v in values)
        if facts.bindings.get(name, 0) != 1 or len(values) != 1:
            where = f" (lines {', '.join(map(str, lines))})" if len(lines) > 1 else ""
            return (f"prompt variable {name} is bound {facts.bindings.get(name, 0)} times"
                    f"{where}: its text at the call is not one string, so it is not edited")
        here, there = self.positions[values[0]].start, self.positions[call].start
        if (here.line, here.column) > (there.line, there.column):
            return f"prompt variable {name} is assigned after the call (line {lines[0]})"
        return values[0]

    def _index_module(self) -> None:
        self.constants, self.constant_nodes = string_constants(self.module)
        self.sibling_aliases = sibling_imports(self.module)
        for stmt in self.module.body:
            if isinstance(stmt, cst.FunctionDef):
                self.functions[stmt.name.value] = (stmt, None)
            elif isinstance(stmt, cst.ClassDef):
                name = stmt.name.value
                self.classes[name] = stmt
                self.class_bases[name] = tuple(
                    b for b in (dotted_name(a.value) for a in stmt.bases) if b
                )
                for item in stmt.body.body if isinstance(stmt.body, cst.IndentedBlock) else ():
                    if isinstance(item, cst.FunctionDef):
                        self.functions[f"{name}.{item.name.value}"] = (item, name)

    def sibling(self, alias: str, node: cst.CSTNode) -> Sibling | None:
        """The sibling module an import binds to `alias`, read once per workflow; None when
        the name is not a sibling (``import json``: no json.py beside the workflow).

        Raises:
            WorkflowError: a relative import of a module that is not there, or a sibling that
                cannot be read (in a strict reading; otherwise None).
        """
        name, relative = self.sibling_aliases[alias]
        path = sibling_path(self.wf.path, name)
        where = f"{self.where}:{self.line(node)}"
        if path is None or not path.is_file() and str(path) not in self.wf.files:
            if relative and self.strict:
                raise WorkflowError(f"prompt module {name}.py not found beside the workflow",
                                    where=where)
            return None
        try:
            return workflow_sibling(self.wf, path, where)
        except UserError as err:
            if self.strict:
                raise WorkflowError(err.message, where=err.where) from None
            return None

    # -- reachability ---------------------------------------------------------------------------

    def _method(self, cls: str, name: str, seen: frozenset = frozenset()) -> str | None:
        if f"{cls}.{name}" in self.functions:
            return f"{cls}.{name}"
        for base in self.class_bases.get(cls, ()):
            if base in self.classes and base not in seen:
                found = self._method(base, name, seen | {cls})
                if found:
                    return found
        return None

    def _resolve_calls(self, qualname: str) -> list[str]:
        """Module functions/methods a function may call (over-approximated; steps excluded)."""
        node, cls = self.functions[qualname]
        self_name = self_param(node) if cls else None
        instances = self.instances(qualname)
        found: list[str] = []
        for call in self.facts(qualname).calls:
            if convention_for(self.conventions, call.func) is not None:
                continue  # a step is a leaf: its callee's body is the model, not the workflow
            callee = self._resolve_one(call.func, cls, self_name, instances)
            for c in callee:
                if c not in found:
                    found.append(c)
        return found

    def _resolve_one(self, func, cls, self_name, instances) -> list[str]:
        if isinstance(func, cst.Name):
            if func.value in self.functions and self.functions[func.value][1] is None:
                return [func.value]
            if func.value in self.classes:
                init = self._method(func.value, "__init__")
                return [init] if init else []
            if func.value in instances:  # an instance called: its class's __call__
                hit = self._method(instances[func.value], "__call__")
                return [hit] if hit else []
            return []
        if isinstance(func, cst.Call) and dotted_name(func.func) in self.classes:
            hit = self._method(dotted_name(func.func), "__call__")  # Flow()(...)
            return [hit] if hit else []
        if not isinstance(func, cst.Attribute):
            return []
        attr = func.attr.value
        owner = func.value
        if isinstance(owner, cst.Name):
            if cls and owner.value == self_name:
                hit = self._method(cls, attr)
                return [hit] if hit else []
            if owner.value in instances:
                hit = self._method(instances[owner.value], attr)
                return [hit] if hit else []
            if owner.value in self.classes:
                hit = self._method(owner.value, attr)
                return [hit] if hit else []
        if isinstance(owner, cst.Call) and dotted_name(owner.func) in self.classes:
            hit = self._method(dotted_name(owner.func), attr)  # type: ignore[arg-type]
            return [hit] if hit else []
        # Unknown receiver: a method name only one module class defines is that method.
        owners = [c for c in self.classes if f"{c}.{attr}" in self.functions]
        return [f"{owners[0]}.{attr}"] if len(owners) == 1 else []

    def _reachable(self) -> list[str]:
        order = [self.entry]
        i = 0
        while i < len(order):
            for callee in self._resolve_calls(order[i]):
                if callee not in order:
                    order.append(callee)
            i += 1
        return order

    # -- the model ------------------------------------------------------------------------------

    def build(self, *, strict: bool) -> _Model:
        if self.entry not in self.functions:
            raise WorkflowError(
                f"no entry function {self.entry!r} (define it, or name another with --entry)",
                where=self.where,
            )
        self.strict = strict
        reachable = self._reachable()
        raw: list[RawStep] = []
        for qualname in reachable:
            node, cls = self.functions[qualname]
            raw.extend(self._steps_in(qualname, node, cls))
        if not raw and strict:
            node = self.functions[self.entry][0]
            raise WorkflowError(
                f"entry function {self.entry!r} makes no step call (callee patterns: "
                f"{', '.join(self.callees)}; name others with --step-callee)",
                where=f"{self.where}:{self.line(node)}",
            )
        raw.sort(key=lambda r: (self.positions[r.call].start.line, self.positions[r.call].start.column))
        ids = _assign_ids(raw)
        _share_prompt_variables(raw, ids)
        flow = DataFlow(self, reachable, raw).run()
        steps = []
        consumed = [{origin_step(o) for o in flow.consumes[i]} for i in range(len(raw))]
        for i, r in enumerate(raw):
            consumes = tuple(ids[j] for j in sorted(consumed[i]))
            feeds = tuple(ids[j] for j in range(len(raw)) if i in consumed[j])
            steps.append(
                Step(
                    id=ids[i],
                    line=self.line(r.call),
                    callee=r.callee,
                    function=r.function,
                    awaited=r.awaited,
                    target=r.target,
                    prompt=r.prompt,
                    params=r.params,
                    reads=r.reads,
                    feeds=feeds,
                    consumes=consumes,
                    flow_caveat=flow.caveat(i),
                    call=r.call,
                    statement=r.statement,
                    convention=r.convention,
                )
            )
        functions = tuple(
            Function(q, self.functions[q][0], self.functions[q][1],
                     self.functions[q][0].asynchronous is not None)
            for q in reachable
        )
        return _Model(tuple(steps), functions, dict(self.constants), self.positions)

    def _steps_in(self, qualname: str, node: cst.FunctionDef, cls: str | None) -> list[RawStep]:
        finder = _StepFinder(self, qualname, cls, self_param(node) if cls else None)
        node.body.visit(finder)
        return finder.found


@dataclass
class RawStep:
    call: cst.Call
    callee: str
    function: str
    awaited: bool
    target: str | None
    prompt: Prompt | None
    params: tuple[tuple[str, str], ...]
    reads: tuple[str, ...]
    statement: cst.BaseStatement | None
    self_name: str | None
    in_lambda: bool = False
    convention: Convention | None = None


class _StepFinder(cst.CSTVisitor):
    """Collects the step calls of one function body, with the statement and assignment of each."""

    def __init__(self, modeller: Modeller, qualname: str, cls: str | None, self_name: str | None):
        self.mod = modeller
        self.qualname = qualname
        self.self_name = self_name
        self.found: list[RawStep] = []
        self._statement: list[cst.BaseStatement | None] = []
        self._awaited: set[int] = set()
        self._targets: dict[int, str] = {}
        # Calls assigned to a tuple of names (`thinking, answer = agent(...)`): the names.
        self._tuples: dict[int, list[str]] = {}
        self._lambdas = 0
        self._locals = modeller.facts(qualname).local_names
        module_level = {q for q, (_, c) in modeller.functions.items() if c is None}
        self._excluded = frozenset(
            (_BUILTINS | module_level | set(modeller.classes)) - self._locals
        )

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        self._statement.append(node)
        for small in node.body:
            for target, value in assignments(small):
                inner = value.expression if isinstance(value, cst.Await) else value
                name = dotted_name(target)
                if isinstance(inner, cst.Call) and name and name.count(".") <= 1:
                    self._targets[id(inner)] = name
            if isinstance(small, cst.Assign) and len(small.targets) == 1 and \
                    isinstance(small.targets[0].target, (cst.Tuple, cst.List)):
                value = small.value.expression if isinstance(small.value, cst.Await) else small.value
                names = [e.value.value for e in small.targets[0].target.elements
                         if isinstance(e.value, cst.Name)]
                if isinstance(value, cst.Call) and names and \
                        len(names) == len(small.targets[0].target.elements):
                    self._tuples[id(value)] = names

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine) -> None:
        self._statement.pop()

    def _enter_compound(self, node) -> None:
        self._statement.append(None)

    def _leave_compound(self, node) -> None:
        self._statement.pop()

    # The header of a compound statement (an `if llm(...)`) has no simple statement of its own.
    visit_If = visit_While = visit_For = visit_With = visit_Try = _enter_compound  # type: ignore[assignment]
    leave_If = leave_While = leave_For = leave_With = leave_Try = _leave_compound  # type: ignore[assignment]

    def visit_Await(self, node: cst.Await) -> None:
        self._awaited.add(id(node.expression))

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        inner = node.value.expression if isinstance(node.value, cst.Await) else node.value
        if isinstance(inner, cst.Call) and isinstance(node.target, cst.Name):
            self._targets[id(inner)] = node.target.value

    def visit_Lambda(self, node: cst.Lambda) -> None:
        self._lambdas += 1

    def leave_Lambda(self, original_node: cst.Lambda) -> None:
        self._lambdas -= 1

    def visit_Call(self, node: cst.Call) -> None:
        convention = convention_for(self.mod.conventions, node.func)
        if convention is None:
            return
        prompt_arg, params = _split_args(node, self.mod.module, convention)
        if prompt_arg is None and convention.requires_prompt and self.mod.strict \
                and not any(a.star for a in node.args):
            raise WorkflowError(
                f"convention {convention.name!r} puts the prompt in "
                f"{' or '.join(_describe_arg(a) for a in convention.prompt_candidates)}, "
                f"which this call of {self.mod.module.code_for_node(node.func)} does not pass",
                where=f"{self.mod.where}:{self.mod.line(node)}",
            )
        target = self._targets.get(id(node))
        if target and "." in target and not target.startswith(f"{self.self_name}."):
            target = None  # obj.attr = llm(...) on some other object: no id from it
        names = self._tuples.get(id(node))
        if names:
            item = convention.answer_item
            target = names[item] if item is not None and item < len(names) else names[0]
        self.found.append(
            RawStep(
                call=node,
                callee=callee_name(node.func) or self.mod.module.code_for_node(node.func),
                function=self.qualname,
                awaited=id(node) in self._awaited,
                target=target,
                prompt=self._at_call(prompt_arg, node) if prompt_arg is not None else None,
                params=params,
                reads=_reads(node.args, self.self_name, self._exclude()),
                statement=self._statement[-1] if self._statement else None,
                self_name=self.self_name,
                in_lambda=self._lambdas > 0,
                convention=convention,
            )
        )

    def _at_call(self, expr: cst.BaseExpression, call: cst.Call) -> Prompt:
        """The prompt at the call, or the text of the local variable the call passes."""
        if isinstance(expr, cst.Name) and expr.value in self._locals:
            held = self.mod.prompt_variable(self.qualname, expr.value, call)
            if isinstance(held, str):
                return Prompt("opaque", None, (expr.value,), None, expr, note=held)
            if held is not None:
                prompt = self._prompt(held)
                if prompt.kind in ("literal", "fstring", "concat"):
                    return dataclasses.replace(prompt, variable=expr.value, at_call=expr)
        return self._prompt(expr)

    def _exclude(self) -> frozenset[str]:
        """Names that are not variables: builtins and module-level functions and classes."""
        return self._excluded

    def _prompt(self, expr: cst.BaseExpression) -> Prompt:
        code = self.mod.module.code_for_node
        if isinstance(expr, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)):
            parts = _string_parts(expr, code)
            if parts is not None:
                has_fields = any(isinstance(p, tuple) for p in parts)
                return _prompt_from_parts("fstring" if has_fields or _has_fstring(expr) else "literal", parts, expr)
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
            parts = []
            for operand in _flatten_add(expr):
                sub = _string_parts(operand, code) if _is_string(operand) else None
                if sub is None:
                    if isinstance(operand, cst.Name) and operand.value in self.mod.constants \
                            and operand.value not in self._locals:
                        sub = [self.mod.constants[operand.value]]
                    else:
                        sub = [(code(operand),)]
                parts.extend(sub)
            return _prompt_from_parts("concat", parts, expr)
        if (
            isinstance(expr, cst.Call)
            and isinstance(expr.func, cst.Attribute)
            and expr.func.attr.value == "format"
        ):
            template, constant = None, None
            owner = expr.func.value
            if _is_string(owner):
                template = _string_value(owner)
            elif isinstance(owner, cst.Name) and owner.value in self.mod.constants \
                    and owner.value not in self._locals:
                template, constant = self.mod.constants[owner.value], owner.value
            if template is not None:
                try:
                    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
                except ValueError:
                    fields = None
                if fields is not None:
                    names = dedupe(f or str(i) for i, f in enumerate(fields))
                    return Prompt("format", template, tuple(names), constant, expr)
        if isinstance(expr, cst.Name) and expr.value in self.mod.constants \
                and expr.value not in self._locals:
            return Prompt("constant", self.mod.constants[expr.value], (), expr.value, expr)
        if isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) \
                and expr.value.value in self.mod.sibling_aliases \
                and expr.value.value not in self._locals:
            sibling = self.mod.sibling(expr.value.value, expr)
            attr = expr.attr.value
            if sibling is not None and attr in sibling.constants:
                return Prompt("constant", sibling.constants[attr], (), attr, expr,
                              module=sibling.path)
            if sibling is not None:
                return Prompt("opaque", None, (), None, expr,
                              note=f"{Path(sibling.path).name} has no string constant {attr} "
                                   "assigned once")
        return Prompt("opaque", None, _reads([cst.Arg(expr)], self.self_name, self._exclude()), None, expr)


def _prompt_from_parts(kind: str, parts: list, node: cst.BaseExpression) -> Prompt:
    text = "".join(p if isinstance(p, str) else "{" + p[0] + "}" for p in parts)
    return Prompt(kind, text, tuple(dedupe(p[0] for p in parts if isinstance(p, tuple))), None, node)


def _is_string(node: cst.CSTNode) -> bool:
    return isinstance(node, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString))


def _has_fstring(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.FormattedString):
        return True
    if isinstance(node, cst.ConcatenatedString):
        return _has_fstring(node.left) or _has_fstring(node.right)
    return False


def _string_value(node: cst.CSTNode) -> str | None:
    """The value of a plain (non-f) string literal, implicit concatenation included."""
    if isinstance(node, cst.SimpleString):
        try:
            value = node.evaluated_value
        except Exception:  # noqa: BLE001 - a literal libcst cannot evaluate is not a constant
            return None
        return value if isinstance(value, str) else None
    if isinstance(node, cst.ConcatenatedString):
        left, right = _string_value(node.left), _string_value(node.right)
        return left + right if left is not None and right is not None else None
    return None


def _string_parts(node: cst.CSTNode, code) -> list | None:
    """A string literal as text pieces and ``(expr_source,)`` placeholders; None if bytes."""
    if isinstance(node, cst.SimpleString):
        value = _string_value(node)
        return None if value is None else [value]
    if isinstance(node, cst.ConcatenatedString):
        left, right = _string_parts(node.left, code), _string_parts(node.right, code)
        return left + right if left is not None and right is not None else None
    if isinstance(node, cst.FormattedString):
        prefix = node.prefix.lower().replace("f", "")
        if "b" in prefix:
            return None
        parts: list = []
        for part in node.parts:
            if isinstance(part, cst.FormattedStringText):
                parts.append(_decode_fstring_text(part.value, prefix, node.quote))
            else:
                parts.append((code(part.expression).strip(),))
        return parts
    return None


def _decode_fstring_text(raw: str, prefix: str, quote: str) -> str:
    import ast

    try:
        text = ast.literal_eval(f"{prefix}{quote}{raw}{quote}")
    except (SyntaxError, ValueError):
        text = raw
    return text.replace("{{", "{").replace("}}", "}")


def _flatten_add(node: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add):
        return _flatten_add(node.left) + _flatten_add(node.right)
    return [node]


def prompt_arg(call: cst.Call, convention: Convention) -> cst.Arg | None:
    """The argument holding the prompt: the first of the convention's candidates the call
    passes (``#N``: the N-th positional argument; else a keyword)."""
    positional = [a for a in call.args if a.keyword is None and not a.star]
    for where in convention.prompt_candidates:
        if where.startswith("#"):
            index = int(where[1:])
            if index < len(positional):
                # Positions after a `*args` cannot be counted.
                if not any(a.star == "*" for a in call.args[: call.args.index(positional[index])]):
                    return positional[index]
            continue
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value == where:
                return arg
    return None


def _split_args(call: cst.Call, module: cst.Module, convention: Convention):
    chosen = prompt_arg(call, convention)
    params: list[tuple[str, str]] = []
    positional = 0
    for arg in call.args:
        if arg.keyword is None and not arg.star:
            if arg is not chosen:
                params.append((f"#{positional}", module.code_for_node(arg.value)))
            positional += 1
        elif arg is not chosen:
            key = arg.keyword.value if arg.keyword is not None else arg.star
            params.append((key, module.code_for_node(arg.value)))
    return (chosen.value if chosen is not None else None), tuple(params)


def _describe_arg(where: str) -> str:
    return f"positional argument {where[1:]}" if where.startswith("#") else f"{where}="


def _share_prompt_variables(raw: list[RawStep], ids: list[str]) -> None:
    """Mark each prompt variable that several steps send with the ids of all of them."""
    users: dict[int, list[int]] = {}
    for i, r in enumerate(raw):
        if r.prompt is not None and r.prompt.variable is not None:
            users.setdefault(id(r.prompt.node), []).append(i)
    for group in users.values():
        if len(group) > 1:
            shared = tuple(ids[i] for i in group)
            for i in group:
                raw[i].prompt = dataclasses.replace(raw[i].prompt, shared_by=shared)


@dataclass
class Facts:
    """What one pass over a function collects; every analysis reads these, none re-walks."""

    calls: list[cst.Call] = field(default_factory=list)
    assignments: list[tuple[cst.BaseExpression, cst.BaseExpression]] = field(default_factory=list)
    local_names: set[str] = field(default_factory=set)
    # How many times each name is bound in the function (parameters and every binding form).
    bindings: dict[str, int] = field(default_factory=dict)
    dynamic: str | None = None

    def bind(self, names) -> None:
        for name in names:
            self.local_names.add(name)
            self.bindings[name] = self.bindings.get(name, 0) + 1


class _FactsCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        self.facts = Facts()

    def _dynamic(self, why: str) -> None:
        if self.facts.dynamic is None:
            self.facts.dynamic = why

    def visit_Call(self, node: cst.Call) -> None:
        self.facts.calls.append(node)
        if isinstance(node.func, cst.Name) and node.func.value in _DYNAMIC_CALLS:
            self._dynamic(f"calls {node.func.value}()")

    def visit_Assign(self, node: cst.Assign) -> None:
        self.facts.assignments.extend(assignments(node))
        for t in node.targets:
            self.facts.bind(bound_names(t.target))

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self.facts.assignments.extend(assignments(node))
        self.facts.bind(bound_names(node.target))

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self.facts.bind(bound_names(node.target))

    def visit_For(self, node: cst.For) -> None:
        self.facts.bind(bound_names(node.target))

    def visit_CompFor(self, node: cst.CompFor) -> None:
        self.facts.bind(bound_names(node.target))

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self.facts.bind(bound_names(node.target))

    def visit_AsName(self, node: cst.AsName) -> None:
        self.facts.bind(bound_names(node.name))

    def visit_MatchAs(self, node: cst.MatchAs) -> None:
        if node.name is not None:
            self.facts.bind([node.name.value])

    def visit_ImportAlias(self, node: cst.ImportAlias) -> None:
        if node.asname is None:
            self.facts.bind([(dotted_name(node.name) or "").split(".")[0]])

    def visit_Global(self, node: cst.Global) -> None:
        self._dynamic("uses global/nonlocal")

    visit_Nonlocal = visit_Global  # type: ignore[assignment]

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._dynamic("defines a nested function or class")
        self.facts.bind([node.name.value])

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._dynamic("defines a nested function or class")
        self.facts.bind([node.name.value])

    def visit_Del(self, node: cst.Del) -> None:
        self._dynamic("deletes variables")


def function_facts(fn: cst.FunctionDef) -> Facts:
    collector = _FactsCollector()
    fn.body.visit(collector)
    collector.facts.bind(param_names(fn.params))
    return collector.facts


def _reads(args: Sequence[cst.Arg], self_name: str | None, exclude: frozenset[str]) -> tuple[str, ...]:
    names: list[str] = []
    for arg in args:
        names.extend(names_read(arg.value, self_name))
    return tuple(n for n in dedupe(names) if n not in exclude)


def _assign_ids(raw: list[RawStep]) -> list[str]:
    """Ids in source order: the target's last name part, else ``step<N>``; repeats get ``_2``..."""
    wanted = [
        (r.target.rsplit(".", 1)[-1] if r.target else f"step{i + 1}") for i, r in enumerate(raw)
    ]
    taken: set[str] = set()
    ids: list[str] = []
    # Reserve every first-wanted name first, so a later `code_2 = llm(...)` keeps its own name
    # only if no earlier `code` needed the suffix.
    for want in wanted:
        candidate, n = want, 1
        while candidate in taken:
            n += 1
            candidate = f"{want}_{n}"
        taken.add(candidate)
        ids.append(candidate)
    return ids


# -- explaining discovery ------------------------------------------------------------------------


@dataclass(frozen=True)
class CallNote:
    """Why one call of a workflow is, or is not, a step (``flowmend steps --explain``)."""

    line: int
    function: str
    callee: str
    step: str | None
    why: str

    def to_json(self) -> dict:
        return {"line": self.line, "function": self.function, "callee": self.callee,
                "step": self.step, "why": self.why}


def explain_calls(wf: Workflow) -> list[CallNote]:
    """Every call in the module's functions (builtins aside), in source order, with the reason
    it is a step (which convention and pattern, where its prompt is) or is not one."""
    mod = Modeller(wf, wf.path or "<workflow>")
    reachable = set(mod._reachable())
    by_call = {id(s.call): s for s in wf.steps}
    notes: list[CallNote] = []
    for qualname, (node, cls) in mod.functions.items():
        facts = mod.facts(qualname)
        resolved = set(mod._resolve_calls(qualname)) if qualname in reachable else set()
        for call in facts.calls:
            name = callee_name(call.func)
            shown = name or wf.code_for(call.func)
            if name in _BUILTINS and name not in facts.local_names:
                continue
            convention = convention_for(wf.conventions, call.func)
            step = by_call.get(id(call))
            if convention is not None and step is not None:
                why = (f"matches {convention.matches(call.func)!r} of convention "
                       f"{convention.name!r}; prompt: {_prompt_where(step)}")
            elif convention is not None:
                why = (f"matches {convention.matches(call.func)!r} of convention "
                       f"{convention.name!r}, but {qualname} is not reached from the entry "
                       f"{wf.entry}")
            else:
                followed = [q for q in mod._resolve_one(
                    call.func, cls, self_param(node) if cls else None, mod.instances(qualname))
                    if q in resolved]
                why = (f"calls {followed[0]}, whose steps are read too" if followed else
                       f"matches no callee pattern ({', '.join(wf.step_callees)})")
            notes.append(CallNote(mod.line(call), qualname, shown,
                                  step.id if step is not None else None, why))
    notes.sort(key=lambda n: n.line)
    return notes


def _prompt_where(step) -> str:
    p = step.prompt
    if p is None:
        return "none (the call passes none of " + ", ".join(
            step.convention.prompt_candidates) + ")"
    if p.variable:
        return f"{p.kind} held by local variable {p.variable}" + (
            f", shared by {', '.join(p.shared_by)}" if p.shared_by else "")
    if p.constant:
        return f"{p.kind} constant {p.constant}"
    if p.note:
        return f"opaque: {p.note}"
    return p.kind
