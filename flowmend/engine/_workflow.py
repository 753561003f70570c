"""The workflow model: a workflow parsed once with libcst into its steps, prompts and data flow.

Operators, the menu and every patch application of one parent program share the one `Workflow`
(and so the one `cst.Module`, node identity included), so metadata is computed once.
"""

from __future__ import annotations

import builtins
import dataclasses
import fnmatch
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider
from libcst.metadata.position_provider import PositionProvidingCodegenState

from flowmend.errors import UserError

_BUILTINS = frozenset(dir(builtins))
# Methods of str/dict/list that never store their arguments in the receiver.
_READ_ONLY_METHODS = frozenset({
    "format", "format_map", "join", "replace", "strip", "lstrip", "rstrip", "split", "rsplit",
    "splitlines", "startswith", "endswith", "lower", "upper", "casefold", "count", "find",
    "rfind", "index", "rindex", "encode", "decode", "get", "partition", "rpartition",
    "removeprefix", "removesuffix", "center", "ljust", "rjust", "zfill", "expandtabs",
})
# Calls whose presence makes a function's data flow impossible to follow by reading it.
_DYNAMIC_CALLS = frozenset({"eval", "exec", "locals", "globals", "vars", "setattr", "getattr"})


class WorkflowError(UserError):
    """A workflow that cannot be modelled: not Python, no entry function, no steps."""


@dataclass(frozen=True)
class Prompt:
    """The text a step sends, as far as it can be read from the source.

    Attributes:
        kind: ``literal`` (a string, implicit concatenation included), ``fstring``, ``concat``
            (``+`` of strings and expressions), ``format`` (``TEMPLATE.format(...)``),
            ``constant`` (a module-level string constant used at the call) or ``opaque``.
        text: the template, each placeholder written ``{expr}``; None when opaque.
        placeholders: the placeholder expressions in order of first use, as source text
            (``task.prompt``, ``plan``); for ``format`` the template's field names.
        constant: the module-level constant holding the text (``constant``, or ``format`` on a
            constant), else None.
        node: the prompt expression at the call.
    """

    kind: str
    text: str | None
    placeholders: tuple[str, ...]
    constant: str | None = None
    node: cst.BaseExpression | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "placeholders": list(self.placeholders),
            "constant": self.constant,
        }


@dataclass(frozen=True)
class Step:
    """One LLM call site.

    Attributes:
        id: stable id: the variable the call's value is assigned to (``plan``; ``plan`` also for
            ``self.plan``), otherwise ``step<N>`` with N its 1-based position among all steps in
            source order. A repeated name gets ``_2``, ``_3``, ... in source order.
        line: 1-based line of the call.
        callee: dotted callee as written (``llm``, ``self.generate``).
        function: qualified enclosing function (``solve``, ``Flow.run``).
        awaited: the call is the operand of ``await``.
        target: the variable assigned (``plan``, ``self.plan``), if any.
        prompt: the prompt argument (first positional or ``prompt=``), None if absent.
        params: the other arguments as (keyword, source text); extra positionals as ``#1``, ...
        reads: variables the call reads: plain names, and ``self.x`` for attributes of a method's
            instance; builtins and module-level functions and classes are not variables.
        feeds: ids of the steps that may consume this step's output.
        consumes: ids of the steps whose output this step may read.
        flow_caveat: None when ``feeds``/``consumes`` are exact; otherwise why they are a
            conservative over-approximation (operators that need exact flow refuse with it).
        call: the call node in `Workflow.module`.
        statement: the simple statement (``plan = llm(...)``) holding the call, or None when
            the call sits in a compound statement's header.
    """

    id: str
    line: int
    callee: str
    function: str
    awaited: bool
    target: str | None
    prompt: Prompt | None
    params: tuple[tuple[str, str], ...]
    reads: tuple[str, ...]
    feeds: tuple[str, ...]
    consumes: tuple[str, ...] = ()
    flow_caveat: str | None = None
    call: cst.Call | None = field(default=None, compare=False, repr=False)
    statement: cst.BaseStatement | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "line": self.line,
            "callee": self.callee,
            "function": self.function,
            "awaited": self.awaited,
            "target": self.target,
            "prompt": self.prompt.to_json() if self.prompt else None,
            "params": {k: v for k, v in self.params},
            "reads": list(self.reads),
            "feeds": list(self.feeds),
            "consumes": list(self.consumes),
            "flow_caveat": self.flow_caveat,
        }


@dataclass(frozen=True)
class Function:
    """A function or method of the module that the entry function reaches (itself included)."""

    qualname: str
    node: cst.FunctionDef = field(compare=False, repr=False)
    cls: str | None
    is_async: bool


@dataclass(frozen=True)
class _Model:
    """What reading a workflow computes: its steps, the functions the entry reaches, the
    module-level string constants, and the position of every node."""

    steps: tuple[Step, ...]
    functions: tuple[Function, ...]
    constants: Mapping[str, str]
    positions: Mapping[cst.CSTNode, CodeRange]


@dataclass(frozen=True)
class Workflow:
    """A workflow parsed once: its module, entry function, steps and reusable metadata.

    `parse_workflow` reads the model (steps, data flow) at once, so a workflow that cannot be
    modelled is refused there. A workflow a patch produced (`Applied.workflow`) reads it on
    first use: most candidates only run, and only the one kept is read for the next menu.
    """

    source: str
    path: str | None
    module: cst.Module = field(compare=False, repr=False)
    entry: str
    step_callees: tuple[str, ...]
    # Values derived from this workflow, each computed once: the model, metadata, sites.
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def steps(self) -> tuple[Step, ...]:
        return self._model().steps

    @property
    def functions(self) -> tuple[Function, ...]:
        return self._model().functions

    @property
    def constants(self) -> Mapping[str, str]:
        return self._model().constants

    def _model(self) -> _Model:
        model = self._cache.get(_MODEL)
        if model is None:
            # Only an edited workflow gets here (parse_workflow models at once): its entry
            # kept its signature, so it exists; an edit that left no step leaves no steps.
            model = self._cache[_MODEL] = _model(self, strict=False)
        return model

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def step_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.steps)

    def function(self, qualname: str) -> Function:
        for fn in self.functions:
            if fn.qualname == qualname:
                return fn
        raise KeyError(qualname)

    @property
    def entry_function(self) -> Function:
        return self.function(self.entry)

    @property
    def is_async(self) -> bool:
        return self.entry_function.is_async

    def metadata(self, provider: type) -> Mapping[cst.CSTNode, Any]:
        """Metadata of `provider` keyed by the nodes of `module`, resolved once and cached."""
        if provider is PositionProvider:
            return self.positions
        if provider not in self._cache:
            wrapper = self.cached(_WRAPPER, lambda: MetadataWrapper(self.module, unsafe_skip_copy=True))
            self._cache[provider] = wrapper.resolve(provider)
        return self._cache[provider]

    @property
    def positions(self) -> Mapping[cst.CSTNode, CodeRange]:
        """The position of every node of `module`, computed once."""
        found = self._cache.get(_POSITIONS)
        if found is None:
            found = self._cache[_POSITIONS] = positions_and_code(self.module)[0]
        return found

    def position(self, node: cst.CSTNode) -> CodeRange:
        return self.positions[node]

    def line(self, node: cst.CSTNode) -> int:
        return self.position(node).start.line

    def code_for(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """A value derived from this workflow, computed once (sites, scopes, free names)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        """The node's parent in `module` (None for the module); the map is built once."""
        return self.cached(_PARENTS, lambda: _parent_map(self.module)).get(id(node))

    def replace(self, replacements: Mapping[cst.CSTNode, Any]) -> cst.Module:
        """A new module with each old node (of `module`) swapped for its replacement.

        Replacements may be nodes, or, inside a sequence (a block's statements, a call's
        arguments), `cst.RemovalSentinel.REMOVE` or a `cst.FlattenSentinel`. Only the
        ancestors of the replaced nodes are rebuilt, so an edit costs the depth of the tree,
        not its size: with `module.code`, applying a patch stays below a bare parse + codegen.
        """
        parents = self.cached(_PARENTS, lambda: _parent_map(self.module))
        new_of: dict[int, Any] = {}
        depth: dict[int, tuple[int, cst.CSTNode]] = {}
        for old, new in replacements.items():
            if id(old) not in parents and old is not self.module:
                raise ValueError(f"{type(old).__name__} is not a node of this workflow's module")
            new_of[id(old)] = new
            node, chain = old, []
            while node is not None:
                chain.append(node)
                node = parents.get(id(node))
            for level, ancestor in enumerate(reversed(chain)):
                depth.setdefault(id(ancestor), (level, ancestor))
        if id(self.module) in new_of:
            return new_of[id(self.module)]
        # Rebuild the ancestors deepest first, each from its already rebuilt children.
        for key, (_, ancestor) in sorted(depth.items(), key=lambda kv: -kv[1][0]):
            if key in new_of:
                continue
            new_of[key] = _rebuild(ancestor, new_of)
        return new_of[id(self.module)]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "entry": self.entry,
            "async": self.is_async,
            "step_callees": list(self.step_callees),
            "functions": [f.qualname for f in self.functions],
            "steps": [s.to_json() for s in self.steps],
        }


_MODEL = "model"
_POSITIONS = "positions"
_WRAPPER = "metadata wrapper"
_PARENTS = "parents"


class _ParentCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        self.parents: dict[int, cst.CSTNode] = {}
        self._stack: list[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self._stack:
            self.parents[id(node)] = self._stack[-1]
        self._stack.append(node)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self._stack.pop()


def _parent_map(module: cst.Module) -> dict[int, cst.CSTNode]:
    collector = _ParentCollector()
    module.visit(collector)
    return collector.parents


def _rebuild(node: cst.CSTNode, new_of: dict[int, Any]) -> cst.CSTNode:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, cst.CSTNode):
            if id(value) in new_of:
                changes[f.name] = new_of[id(value)]
        elif isinstance(value, (tuple, list)) and any(
            isinstance(v, cst.CSTNode) and id(v) in new_of for v in value
        ):
            items: list[Any] = []
            for v in value:
                r = new_of.get(id(v), v) if isinstance(v, cst.CSTNode) else v
                if r is cst.RemovalSentinel.REMOVE:
                    continue
                if isinstance(r, cst.FlattenSentinel):
                    items.extend(r.nodes)
                else:
                    items.append(r)
            changes[f.name] = type(value)(items)
    return node.with_changes(**changes) if changes else node


def parse_workflow(
    source: str,
    *,
    entry: str = "solve",
    step_callees: Sequence[str] = ("llm",),
    path: str | None = None,
    module: cst.Module | None = None,
) -> Workflow:
    """Parse `source` once and model its entry function's steps and data flow.

    Args:
        entry: the entry function: a module-level function (``solve``) or a method
            (``Flow.run``).
        step_callees: dotted callee patterns that make a call a step, globs allowed
            (``llm``, ``self.generate``, ``self.custom*``).
        path: where the source came from, for error messages.
        module: `source` already parsed by libcst, so that it is not parsed again.

    Raises:
        WorkflowError: not Python, no such entry function, or no steps reachable from it.
    """
    where = path or "<workflow>"
    callees = tuple(step_callees)
    if not callees or any(not isinstance(c, str) or not c.strip() for c in callees):
        raise WorkflowError("step callee patterns must be non-empty strings", where=where)
    if module is None:
        module = parse_module(source, where)
    positions, code = positions_and_code(module)
    _check_round_trip(code, source, where)
    wf = Workflow(source, path, module, entry, callees, {_POSITIONS: positions})
    wf._cache[_MODEL] = _model(wf, strict=True)
    return wf


def parse_module(source: str, where: str = "<workflow>") -> cst.Module:
    """libcst's parse, its errors as one-line `WorkflowError`s."""
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as err:
        # libcst's message spans several lines; the first one says what.
        what = str(err.message).strip().splitlines()[0] if err.message else "syntax error"
        raise WorkflowError(
            f"not Python: {what}", where=f"{where}:{err.raw_line}:{err.raw_column + 1}"
        ) from None
    except (RecursionError, MemoryError):
        raise WorkflowError("not Python: too deeply nested to parse", where=where) from None


def _model(wf: Workflow, *, strict: bool) -> _Model:
    return _Modeller(wf, wf.path or "<workflow>").build(strict=strict)


def positions_and_code(module: cst.Module) -> tuple[Mapping[cst.CSTNode, CodeRange], str]:
    """The position of every node and the module's code, from one codegen pass.

    This is what `PositionProvider` computes (through `MetadataWrapper`, which adds a pass);
    the tokens it generates are the code, so the round-trip check costs nothing more.
    """
    provider = PositionProvider()
    state = PositionProvidingCodegenState(
        default_indent=module.default_indent,
        default_newline=module.default_newline,
        provider=provider,
    )
    module._codegen(state)
    return provider._computed, "".join(state.tokens)


def _check_round_trip(code: str, source: str, where: str) -> None:
    """Refuse a file libcst would not reproduce byte for byte: every edit keeps the rest as is.

    libcst drops a byte-order mark, bare CR line ends and whitespace on the blank lines that
    end a file; editing such a file would silently rewrite bytes far from the edit.
    """
    if code == source:
        return
    if source.startswith("\ufeff"):
        what, line = "a byte-order mark", 1
    else:
        ours, theirs = source.splitlines(keepends=True), code.splitlines(keepends=True)
        line = next((i for i, (a, b) in enumerate(zip(ours, theirs), 1) if a != b),
                    min(len(ours), len(theirs)) + 1)
        if "\r" in source.replace("\r\n", ""):
            what = "bare CR line ends"
        elif source.rstrip() == code.rstrip():
            what = "whitespace on the blank lines at the end of the file"
        else:
            what = "formatting libcst does not reproduce"
    raise WorkflowError(
        f"cannot keep this file byte-identical under edits: it has {what}; normalise it first",
        where=f"{where}:{line}",
    )


def dotted_name(node: cst.BaseExpression) -> str | None:
    """``llm`` for a name, ``self.generate`` for an attribute chain of names, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted_name(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None


def matches_callee(name: str | None, patterns: Iterable[str]) -> bool:
    return name is not None and any(fnmatch.fnmatchcase(name, p) for p in patterns)


# --- building the model ------------------------------------------------------------------------


class _Modeller:
    def __init__(self, wf: Workflow, where: str):
        self.where = where
        self.module: cst.Module = wf.module
        self.positions = wf.positions
        self.entry = wf.entry
        self.callees = wf.step_callees
        self.functions: dict[str, tuple[cst.FunctionDef, str | None]] = {}
        self.classes: dict[str, cst.ClassDef] = {}
        self.class_bases: dict[str, tuple[str, ...]] = {}
        self.constants: dict[str, str] = {}
        self.constant_nodes: dict[str, cst.BaseExpression] = {}
        self._facts: dict[str, _Facts] = {}
        self._index_module()

    def facts(self, qualname: str) -> _Facts:
        if qualname not in self._facts:
            self._facts[qualname] = _function_facts(self.functions[qualname][0])
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

    def _index_module(self) -> None:
        assigned: dict[str, int] = {}
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
            elif isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    for target, value in _assignments(small):
                        if isinstance(target, cst.Name):
                            assigned[target.value] = assigned.get(target.value, 0) + 1
                            text = _string_value(value)
                            if text is not None:
                                self.constants[target.value] = text
                                self.constant_nodes[target.value] = value
        # A name assigned twice at module level is not a constant.
        for name, count in assigned.items():
            if count > 1:
                self.constants.pop(name, None)
                self.constant_nodes.pop(name, None)

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
        self_name = _self_param(node) if cls else None
        instances = self.instances(qualname)
        found: list[str] = []
        for call in self.facts(qualname).calls:
            name = dotted_name(call.func)
            if matches_callee(name, self.callees):
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
            return []
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
        reachable = self._reachable()
        raw: list[_RawStep] = []
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
        flow = _DataFlow(self, reachable, raw).run()
        steps = []
        consumed = [{_index(o) for o in flow.consumes[i]} for i in range(len(raw))]
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
                )
            )
        functions = tuple(
            Function(q, self.functions[q][0], self.functions[q][1],
                     self.functions[q][0].asynchronous is not None)
            for q in reachable
        )
        return _Model(tuple(steps), functions, dict(self.constants), self.positions)

    def _steps_in(self, qualname: str, node: cst.FunctionDef, cls: str | None) -> list[_RawStep]:
        finder = _StepFinder(self, qualname, cls, _self_param(node) if cls else None)
        node.body.visit(finder)
        return finder.found


@dataclass
class _RawStep:
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


class _StepFinder(cst.CSTVisitor):
    """Collects the step calls of one function body, with the statement and assignment of each."""

    def __init__(self, modeller: _Modeller, qualname: str, cls: str | None, self_name: str | None):
        self.mod = modeller
        self.qualname = qualname
        self.self_name = self_name
        self.found: list[_RawStep] = []
        self._statement: list[cst.BaseStatement | None] = []
        self._awaited: set[int] = set()
        self._targets: dict[int, str] = {}
        self._lambdas = 0
        self._locals = modeller.facts(qualname).local_names
        module_level = {q for q, (_, c) in modeller.functions.items() if c is None}
        self._excluded = frozenset(
            (_BUILTINS | module_level | set(modeller.classes)) - self._locals
        )

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        self._statement.append(node)
        for small in node.body:
            for target, value in _assignments(small):
                inner = value.expression if isinstance(value, cst.Await) else value
                name = dotted_name(target)
                if isinstance(inner, cst.Call) and name and name.count(".") <= 1:
                    self._targets[id(inner)] = name

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
        callee = dotted_name(node.func)
        if not matches_callee(callee, self.mod.callees):
            return
        prompt_arg, params = _split_args(node, self.mod.module)
        target = self._targets.get(id(node))
        if target and "." in target and not target.startswith(f"{self.self_name}."):
            target = None  # obj.attr = llm(...) on some other object: no id from it
        self.found.append(
            _RawStep(
                call=node,
                callee=callee,  # type: ignore[arg-type]
                function=self.qualname,
                awaited=id(node) in self._awaited,
                target=target,
                prompt=self._prompt(prompt_arg) if prompt_arg is not None else None,
                params=params,
                reads=_reads(node.args, self.self_name, self._exclude()),
                statement=self._statement[-1] if self._statement else None,
                self_name=self.self_name,
                in_lambda=self._lambdas > 0,
            )
        )

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
                    names = _dedupe(f or str(i) for i, f in enumerate(fields))
                    return Prompt("format", template, tuple(names), constant, expr)
        if isinstance(expr, cst.Name) and expr.value in self.mod.constants \
                and expr.value not in self._locals:
            return Prompt("constant", self.mod.constants[expr.value], (), expr.value, expr)
        return Prompt("opaque", None, _reads([cst.Arg(expr)], self.self_name, self._exclude()), None, expr)


def _prompt_from_parts(kind: str, parts: list, node: cst.BaseExpression) -> Prompt:
    text = "".join(p if isinstance(p, str) else "{" + p[0] + "}" for p in parts)
    return Prompt(kind, text, tuple(_dedupe(p[0] for p in parts if isinstance(p, tuple))), None, node)


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


def _dedupe(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _split_args(call: cst.Call, module: cst.Module):
    prompt = None
    params: list[tuple[str, str]] = []
    positional = 0
    for arg in call.args:
        if arg.keyword is None and not arg.star:
            if positional == 0:
                prompt = arg.value
            else:
                params.append((f"#{positional}", module.code_for_node(arg.value)))
            positional += 1
        elif arg.keyword is not None and arg.keyword.value == "prompt":
            prompt = arg.value
        else:
            key = arg.keyword.value if arg.keyword is not None else arg.star
            params.append((key, module.code_for_node(arg.value)))
    return prompt, tuple(params)


def _self_param(node: cst.FunctionDef) -> str | None:
    for deco in node.decorators:
        if dotted_name(deco.decorator) == "staticmethod":
            return None
    params = node.params.posonly_params or node.params.params
    return params[0].name.value if params else None


def _assignments(small: cst.CSTNode) -> list[tuple[cst.BaseExpression, cst.BaseExpression]]:
    """(target, value) pairs of a simple assignment statement; tuple targets are skipped."""
    if isinstance(small, cst.Assign) and len(small.targets) == 1:
        return [(small.targets[0].target, small.value)]
    if isinstance(small, cst.AnnAssign) and small.value is not None:
        return [(small.target, small.value)]
    return []


@dataclass
class _Facts:
    """What one pass over a function collects; every analysis reads these, none re-walks."""

    calls: list[cst.Call] = field(default_factory=list)
    assignments: list[tuple[cst.BaseExpression, cst.BaseExpression]] = field(default_factory=list)
    local_names: set[str] = field(default_factory=set)
    dynamic: str | None = None


def _param_names(params: cst.Parameters) -> list[str]:
    found = [*params.posonly_params, *params.params, *params.kwonly_params]
    for star in (params.star_arg, params.star_kwarg):
        if isinstance(star, cst.Param):
            found.append(star)
    return [p.name.value for p in found]


def _bound_names(target: cst.CSTNode) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _bound_names(e.value)]
    if isinstance(target, cst.StarredElement):
        return _bound_names(target.value)
    return []


class _FactsCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        self.facts = _Facts()

    def _dynamic(self, why: str) -> None:
        if self.facts.dynamic is None:
            self.facts.dynamic = why

    def visit_Call(self, node: cst.Call) -> None:
        self.facts.calls.append(node)
        if isinstance(node.func, cst.Name) and node.func.value in _DYNAMIC_CALLS:
            self._dynamic(f"calls {node.func.value}()")

    def visit_Assign(self, node: cst.Assign) -> None:
        self.facts.assignments.extend(_assignments(node))
        for t in node.targets:
            self.facts.local_names.update(_bound_names(t.target))

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self.facts.assignments.extend(_assignments(node))
        self.facts.local_names.update(_bound_names(node.target))

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self.facts.local_names.update(_bound_names(node.target))

    def visit_For(self, node: cst.For) -> None:
        self.facts.local_names.update(_bound_names(node.target))

    def visit_CompFor(self, node: cst.CompFor) -> None:
        self.facts.local_names.update(_bound_names(node.target))

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self.facts.local_names.update(_bound_names(node.target))

    def visit_AsName(self, node: cst.AsName) -> None:
        self.facts.local_names.update(_bound_names(node.name))

    def visit_MatchAs(self, node: cst.MatchAs) -> None:
        if node.name is not None:
            self.facts.local_names.add(node.name.value)

    def visit_ImportAlias(self, node: cst.ImportAlias) -> None:
        if node.asname is None:
            self.facts.local_names.add((dotted_name(node.name) or "").split(".")[0])

    def visit_Global(self, node: cst.Global) -> None:
        self._dynamic("uses global/nonlocal")

    visit_Nonlocal = visit_Global  # type: ignore[assignment]

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._dynamic("defines a nested function or class")
        self.facts.local_names.add(node.name.value)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._dynamic("defines a nested function or class")
        self.facts.local_names.add(node.name.value)

    def visit_Del(self, node: cst.Del) -> None:
        self._dynamic("deletes variables")


def _function_facts(fn: cst.FunctionDef) -> _Facts:
    collector = _FactsCollector()
    fn.body.visit(collector)
    collector.facts.local_names.update(_param_names(fn.params))
    return collector.facts


class _CallCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        self.calls: list[cst.Call] = []

    def visit_Call(self, node: cst.Call) -> None:
        self.calls.append(node)


def _calls(node: cst.CSTNode) -> list[cst.Call]:
    collector = _CallCollector()
    node.visit(collector)
    return collector.calls


class _ReadCollector(cst.CSTVisitor):
    """Names an expression reads: ``self.x`` for a method's instance attributes, plain names
    otherwise; attribute names, keywords, and names bound by comprehensions and lambdas are not.
    """

    def __init__(self, self_name: str | None):
        self.self_name = self_name
        self.names: list[str] = []

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if self.self_name and isinstance(node.value, cst.Name) and node.value.value == self.self_name:
            self.names.append(f"{self.self_name}.{node.attr.value}")
        else:
            node.value.visit(self)
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        node.value.visit(self)
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self.names.append(node.value)

    def _scoped(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.Lambda):
            bound = set(_param_names(node.params))
            parts: list[cst.CSTNode] = [node.body]
        else:
            bound = set()
            comp = node.for_in
            while comp is not None:
                bound.update(_bound_names(comp.target))
                comp = comp.inner_for_in
            parts = list(node.children)
        inner = _ReadCollector(self.self_name)
        for part in parts:
            part.visit(inner)
        self.names.extend(n for n in inner.names if n.split(".")[0] not in bound)
        return False

    visit_Lambda = visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _scoped  # type: ignore[assignment]


def _names_read(node: cst.CSTNode, self_name: str | None) -> list[str]:
    collector = _ReadCollector(self_name)
    node.visit(collector)
    return collector.names


def _reads(args: Sequence[cst.Arg], self_name: str | None, exclude: frozenset[str]) -> tuple[str, ...]:
    names: list[str] = []
    for arg in args:
        names.extend(_names_read(arg.value, self_name))
    return tuple(n for n in _dedupe(names) if n not in exclude)


def _assign_ids(raw: list[_RawStep]) -> list[str]:
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


# --- data flow -------------------------------------------------------------------------------


class _DataFlow:
    """A may-reach analysis of step outputs through variables.

    Within a function it is flow-sensitive (straight-line code is exact; branches and loops
    join); across functions it is conservative: call arguments flow into the callee's
    parameters, a callee's return value carries every origin it may return, and ``self``
    attributes are shared by all methods of a class.
    """

    def __init__(self, modeller: _Modeller, reachable: list[str], raw: list[_RawStep]):
        self.mod = modeller
        self.reachable = reachable
        self.raw = raw
        self.step_index = {id(r.call): i for i, r in enumerate(raw)}
        self.consumes: list[set[int]] = [set() for _ in raw]
        self.returns: dict[str, frozenset[int]] = {q: frozenset() for q in reachable}
        self.params_in: dict[str, frozenset[int]] = {q: frozenset() for q in reachable}
        self.attrs: dict[tuple[str, str], frozenset[int]] = {}
        self.globals: dict[str, frozenset[int]] = {}  # module-level objects a function mutates
        self.attr_writers: dict[tuple[str, str], set[str]] = {}
        self.dynamic: dict[str, str] = {}
        self._children: dict[int, Sequence[cst.CSTNode]] = {}
        self._scoped: dict[int, tuple[list[str], list[cst.Call]]] = {}

    def run(self) -> "_DataFlow":
        for q in self.reachable:
            node, cls = self.mod.functions[q]
            reason = self.mod.facts(q).dynamic
            if reason:
                self.dynamic[q] = reason
            self_name = _self_param(node) if cls else None
            for target, _ in self.mod.facts(q).assignments:
                if isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) \
                        and target.value.value == self_name:
                    self.attr_writers.setdefault((cls, target.attr.value), set()).add(q)
        # Interprocedural facts only grow; a handful of rounds reach the fixpoint for any
        # realistic workflow, and more rounds would only add origins, never remove them.
        for _ in range(max(2, len(self.reachable) + 1)):
            before = (dict(self.returns), dict(self.params_in), dict(self.attrs),
                      dict(self.globals), [set(c) for c in self.consumes])
            for q in self.reachable:
                _FunctionFlow(self, q).run()
            if before == (self.returns, self.params_in, self.attrs, self.globals, self.consumes):
                break
        return self

    def children(self, node: cst.CSTNode) -> Sequence[cst.CSTNode]:
        """`node.children`, computed once per node: libcst builds the list with a visitor."""
        key = id(node)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = node.children
        return found

    def scoped(self, node: cst.CSTNode, self_name: str | None) -> tuple[list[str], list[cst.Call]]:
        """What a lambda or comprehension reads and calls, computed once per node."""
        key = id(node)
        found = self._scoped.get(key)
        if found is None:
            found = self._scoped[key] = (_names_read(node, self_name), _calls(node))
        return found

    def caveat(self, i: int) -> str | None:
        fn = self.raw[i].function
        if fn in self.dynamic:
            return f"{fn} {self.dynamic[fn]}, so its data flow cannot be read from the source"
        if self.raw[i].in_lambda:
            return "the step is inside a lambda: its inputs arrive through the lambda's parameters"
        for origin in sorted(self.consumes[i]):
            if origin < 0:
                return (
                    f"it may read the output of the step at line {self.mod.line(self.raw[_index(origin)].call)} "
                    "through a call, an instance attribute or a module-level object: the flow is approximate"
                )
        for j, consumed in enumerate(self.consumes):
            if _approx(i) in consumed:
                return (
                    f"its output may reach the step at line {self.mod.line(self.raw[j].call)} "
                    "through a call, an instance attribute or a module-level object: the flow is approximate"
                )
        return None


def _approx(i: int) -> int:
    """Origins are step indices; an origin that went through a call or a shared instance
    attribute is kept as ``-(i + 1)``, so that the facts it yields are marked approximate."""
    return i if i < 0 else -i - 1


def _index(origin: int) -> int:
    return origin if origin >= 0 else -origin - 1


def _approx_all(origins) -> frozenset[int]:
    return frozenset(_approx(o) for o in origins)


_State = dict  # variable -> frozenset of step indices whose output it may hold


class _FunctionFlow:
    def __init__(self, flow: _DataFlow, qualname: str):
        self.flow = flow
        self.qualname = qualname
        self.node, self.cls = flow.mod.functions[qualname]
        self.self_name = _self_param(self.node) if self.cls else None
        self.instances = flow.mod.instances(qualname)
        self.locals = flow.mod.facts(qualname).local_names

    def run(self) -> None:
        state: _State = {}
        incoming = self.flow.params_in[self.qualname]
        for name in _param_names(self.node.params):
            state[name] = incoming
        self._block(self.node.body, state)

    # -- expressions ----------------------------------------------------------------------------

    def _origins(self, node: cst.CSTNode, state: _State) -> frozenset[int]:
        """What an expression's value may carry; records step consumption and call flows.

        A step's value is its own output only: what its prompt read is what it consumes, not
        what it passes on.
        """
        if isinstance(node, cst.Call):
            return self._call(node, state)
        if isinstance(node, cst.Name):
            return self._var(node.value, state)
        if isinstance(node, cst.Attribute):
            if self.self_name and isinstance(node.value, cst.Name) and node.value.value == self.self_name:
                return self._var(f"{self.self_name}.{node.attr.value}", state)
            return self._origins(node.value, state)
        if isinstance(node, cst.Arg):
            return self._origins(node.value, state)
        if isinstance(node, cst.NamedExpr):
            origins = self._origins(node.value, state)
            self._bind(node.target, origins, state)
            return origins
        if isinstance(node, (cst.Lambda, cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)):
            # Own scopes: names they bind are not ours; every call inside still counts.
            names, calls = self.flow.scoped(node, self.self_name)
            out: set[int] = set()
            for name in names:
                out |= self._var(name, state)
            for call in calls:
                out |= self._call(call, state)
            return frozenset(out)
        out = set()
        for child in self.flow.children(node):
            out |= self._origins(child, state)
        return frozenset(out)

    def _var(self, name: str, state: _State) -> frozenset[int]:
        if self.self_name and name.startswith(self.self_name + "."):
            key = (self.cls, name.split(".", 1)[1])
            # Exact only when this function is the attribute's one writer and wrote it on the
            # way here; otherwise any write anywhere in the class may be what is read.
            if name in state and self.flow.attr_writers.get(key) == {self.qualname}:
                return state[name]
            return state.get(name, frozenset()) | _approx_all(self.flow.attrs.get(key, ()))
        if name not in self.locals and name in self.flow.globals:
            # A module-level object some function stored step output in.
            return state.get(name, frozenset()) | _approx_all(self.flow.globals[name])
        return state.get(name, frozenset())

    def _store_into(self, root: str, origins: frozenset[int], state: _State) -> None:
        """`root` (a variable, or ``self.x``) may now hold `origins` besides what it held."""
        state[root] = state.get(root, frozenset()) | origins
        if "." not in root and root not in self.locals:
            self.flow.globals[root] = self.flow.globals.get(root, frozenset()) | origins

    def _call(self, call: cst.Call, state: _State) -> frozenset[int]:
        arg_origins: set[int] = set()
        for arg in call.args:
            arg_origins |= self._origins(arg.value, state)
        index = self.flow.step_index.get(id(call))
        if index is not None:
            self.flow.consumes[index] |= arg_origins
            return frozenset({index})
        out = set(self._origins(call.func, state))
        callees = [
            c for c in self.flow.mod._resolve_one(call.func, self.cls, self.self_name, self.instances)
            if c in self.flow.params_in
        ]
        for callee in callees:
            # A function of the module: its arguments reach its parameters (at every call
            # site alike), and its value is what its returns may carry.
            self.flow.params_in[callee] |= _approx_all(arg_origins)
            out |= _approx_all(self.flow.returns[callee])
        if not callees:
            out |= arg_origins  # anything else (str.strip, extract_code) may pass them on
        # A method call on a variable may store its arguments in it (`notes.append(plan)`),
        # unless the method is one that only reads its receiver (`TEMPLATE.format(plan=plan)`).
        if isinstance(call.func, cst.Attribute) and arg_origins \
                and call.func.attr.value not in _READ_ONLY_METHODS:
            receiver = dotted_name(call.func.value)
            if receiver and (receiver.count(".") == 0 or receiver.startswith(f"{self.self_name}.")):
                self._store_into(receiver, frozenset(arg_origins), state)
        return frozenset(out)

    # -- statements -----------------------------------------------------------------------------

    def _block(self, block: cst.BaseSuite, state: _State) -> None:
        if isinstance(block, cst.SimpleStatementSuite):
            for small in block.body:
                self._small(small, state)
            return
        for stmt in block.body:
            self._statement(stmt, state)

    def _statement(self, stmt: cst.BaseStatement, state: _State) -> None:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                self._small(small, state)
        elif isinstance(stmt, cst.If):
            self._origins(stmt.test, state)
            other = dict(state)
            self._block(stmt.body, state)
            if stmt.orelse is not None:
                if isinstance(stmt.orelse, cst.If):
                    self._statement(stmt.orelse, other)
                else:
                    self._block(stmt.orelse.body, other)
            _join_into(state, other)
        elif isinstance(stmt, (cst.For, cst.While)):
            if isinstance(stmt, cst.For):
                origins = self._origins(stmt.iter, state)
            for _ in range(3):  # loops: iterate until the may-facts stop growing
                before = dict(state)
                if isinstance(stmt, cst.For):
                    self._bind(stmt.target, origins, state)
                else:
                    self._origins(stmt.test, state)
                body = dict(state)
                self._block(stmt.body, body)
                _join_into(state, body)
                if state == before:
                    break
            if stmt.orelse is not None:
                self._block(stmt.orelse.body, state)
        elif isinstance(stmt, cst.With):
            for item in stmt.items:
                origins = self._origins(item.item, state)
                if item.asname is not None:
                    self._bind(item.asname.name, origins, state)
            self._block(stmt.body, state)
        elif isinstance(stmt, cst.Try):
            entry = dict(state)
            self._block(stmt.body, state)
            for handler in stmt.handlers:
                branch = dict(entry)
                _join_into(branch, state)  # the handler may start after any part of the body
                self._block(handler.body, branch)
                _join_into(state, branch)
            if stmt.orelse is not None:
                self._block(stmt.orelse.body, state)
            if stmt.finalbody is not None:
                self._block(stmt.finalbody.body, state)
        elif isinstance(stmt, cst.Match):
            subject = self._origins(stmt.subject, state)
            joined = dict(state)
            for case in stmt.cases:
                branch = dict(state)
                for name in _pattern_names(case.pattern):
                    branch[name] = subject  # a capture holds (part of) the subject
                if case.guard is not None:
                    self._origins(case.guard, branch)
                self._block(case.body, branch)
                _join_into(joined, branch)
            state.clear()
            state.update(joined)
        else:
            # Anything else (nested defs, class bodies): read everything, bind nothing new.
            self._origins(stmt, state)

    def _small(self, small: cst.BaseSmallStatement, state: _State) -> None:
        if isinstance(small, cst.Assign):
            origins = self._origins(small.value, state)
            for target in small.targets:
                self._bind(target.target, origins, state)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                self._bind(small.target, self._origins(small.value, state), state)
        elif isinstance(small, cst.AugAssign):
            origins = self._origins(small.value, state) | self._origins(small.target, state)
            self._bind(small.target, origins, state)
        elif isinstance(small, cst.Return):
            if small.value is not None:
                self._return(self._origins(small.value, state))
        elif isinstance(small, cst.Expr) and isinstance(small.value, (cst.Yield,)):
            if small.value.value is not None and isinstance(small.value.value, cst.BaseExpression):
                self._return(self._origins(small.value.value, state))
        else:
            self._origins(small, state)

    def _return(self, origins: frozenset[int]) -> None:
        self.flow.returns[self.qualname] |= origins

    def _bind(self, target: cst.CSTNode, origins: frozenset[int], state: _State) -> None:
        if isinstance(target, cst.Name):
            state[target.value] = origins  # a plain assignment replaces what the name held
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._bind(element.value, origins, state)
        elif isinstance(target, cst.StarredElement):
            self._bind(target.value, origins, state)
        elif isinstance(target, cst.Attribute) and self.self_name and \
                isinstance(target.value, cst.Name) and target.value.value == self.self_name:
            key = (self.cls, target.attr.value)
            self.flow.attrs[key] = self.flow.attrs.get(key, frozenset()) | origins
            state[f"{self.self_name}.{target.attr.value}"] = origins
        else:
            # obj.attr = ..., obj[k] = ...: the object may now hold the value.
            self._origins(target, state)
            root = target
            while isinstance(root, (cst.Attribute, cst.Subscript)):
                root = root.value
            if isinstance(root, cst.Name):
                self._store_into(root.value, origins, state)


def _pattern_names(pattern: cst.CSTNode) -> list[str]:
    """Names a match pattern captures (`case [x, *rest]`, `case {"k": v}`, `case P() as p`)."""
    names: list[str] = []

    class Captures(cst.CSTVisitor):
        def visit_MatchAs(self, node: cst.MatchAs) -> None:
            if node.name is not None:
                names.append(node.name.value)

        def visit_MatchStar(self, node: cst.MatchStar) -> None:
            if node.name is not None:
                names.append(node.name.value)

        def visit_MatchMapping(self, node: cst.MatchMapping) -> None:
            if node.rest is not None:
                names.append(node.rest.value)

    pattern.visit(Captures())
    return names


def _join_into(state: _State, other: _State) -> None:
    for name, origins in other.items():
        state[name] = state.get(name, frozenset()) | origins
