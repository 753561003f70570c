"""The workflow model: a workflow parsed once with libcst into its steps, prompts and data flow.

Operators, the menu and every patch application of one parent program share the one `Workflow`
(and so the one `cst.Module`, node identity included), so metadata is computed once. Reading
the steps and prompts lives in `_steps.py`, the data flow in `_dataflow.py`, libcst helpers in
`_cstutil.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from flowmend.engine._convention import DEFAULT, Convention, check_unique, from_callees
from flowmend.engine._cstutil import (  # noqa: F401 - dotted_name, matches_callee: public API
    dotted_name, matches_callee, parent_map, positions_and_code, rebuild,
)
from flowmend.errors import UserError


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
        variable: the local variable holding the text, assigned once before the call in the
            same function (``cot_instruction = "..."``; ``kind`` is then the kind of its
            value), else None.
        shared_by: the ids of every step whose prompt is this same variable or constant, this
            one included, when more than one step uses it (an edit of the text changes them all).
        note: why the text could not be read, for an opaque prompt that looked readable (a
            prompt variable assigned more than once); None otherwise.
        node: the expression holding the text: the prompt at the call, or the value assigned to
            the prompt variable.
        at_call: the prompt expression at the call (``node`` itself unless a variable holds it).
        module: the sibling module file holding ``constant`` (``prompts.CODE`` with prompts.py
            beside the workflow), else None: an edit of the text changes that file.
    """

    kind: str
    text: str | None
    placeholders: tuple[str, ...]
    constant: str | None = None
    node: cst.BaseExpression | None = field(default=None, compare=False, repr=False)
    variable: str | None = None
    shared_by: tuple[str, ...] = ()
    note: str | None = None
    at_call: cst.BaseExpression | None = field(default=None, compare=False, repr=False)
    module: str | None = None

    @property
    def call_node(self) -> cst.BaseExpression | None:
        """The prompt expression at the call."""
        return self.at_call if self.at_call is not None else self.node

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "text": self.text,
            "placeholders": list(self.placeholders),
            "constant": self.constant,
        }
        # Keys only where they say something, so a workflow in flowmend's own convention reads
        # exactly as it always did.
        for key in ("variable", "note", "module"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.shared_by:
            data["shared_by"] = list(self.shared_by)
        return data


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
        target: the variable assigned (``plan``, ``self.plan``), if any; for a tuple target
            (``thinking, answer = agent(...)``) the name the convention's ``item:N`` answer
            names, else the first.
        prompt: the prompt argument (where the convention says: by default the first
            positional or ``prompt=``), None if absent.
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
        convention: the convention under which the call is a step.
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
    convention: Convention = DEFAULT

    def to_json(self) -> dict[str, Any]:
        data = {
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
        if self.convention != DEFAULT:
            data["convention"] = self.convention.name
        return data


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
    # How step calls are written, first match wins; `parse_workflow` always fills it.
    conventions: tuple[Convention, ...] = ()
    # The new text of each sibling module an edit changed (path -> source); every other
    # sibling is read from the disk.
    files: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
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
        return self.cached(_PARENTS, lambda: parent_map(self.module)).get(id(node))

    def replace(self, replacements: Mapping[cst.CSTNode, Any]) -> cst.Module:
        """A new module with each old node (of `module`) swapped for its replacement.

        Replacements may be nodes, or, inside a sequence (a block's statements, a call's
        arguments), `cst.RemovalSentinel.REMOVE` or a `cst.FlattenSentinel`. Only the
        ancestors of the replaced nodes are rebuilt, so an edit costs the depth of the tree,
        not its size: with `module.code`, applying a patch stays below a bare parse + codegen.
        """
        parents = self.cached(_PARENTS, lambda: parent_map(self.module))
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
            new_of[key] = rebuild(ancestor, new_of)
        return new_of[id(self.module)]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "entry": self.entry,
            "async": self.is_async,
            "step_callees": list(self.step_callees),
            **({"conventions": [c.to_json() for c in self.conventions]}
               if self.conventions != (DEFAULT,) else {}),
            "functions": [f.qualname for f in self.functions],
            "steps": [s.to_json() for s in self.steps],
        }


_MODEL = "model"
_POSITIONS = "positions"
_WRAPPER = "metadata wrapper"
_PARENTS = "parents"


def parse_workflow(
    source: str,
    *,
    entry: str = "solve",
    step_callees: Sequence[str] = ("llm",),
    path: str | None = None,
    module: cst.Module | None = None,
    conventions: Sequence[Convention] | None = None,
    files: Mapping[str, str] | None = None,
) -> Workflow:
    """Parse `source` once and model its entry function's steps and data flow.

    Args:
        entry: the entry function: a module-level function (``solve``) or a method
            (``Flow.run``).
        step_callees: dotted callee patterns that make a call a step, globs allowed
            (``llm``, ``self.generate``, ``self.custom*``).
        path: where the source came from, for error messages.
        module: `source` already parsed by libcst, so that it is not parsed again.
        conventions: how step calls are written (first match wins); when given,
            `step_callees` is ignored. Default: flowmend's own convention with `step_callees`.
        files: sibling modules' text by path, read instead of the disk (what an edit changed).

    Raises:
        WorkflowError: not Python, no such entry function, or no steps reachable from it.
    """
    where = path or "<workflow>"
    if conventions is not None:
        conventions = tuple(conventions)
        if not conventions:
            raise WorkflowError("no step convention given", where=where)
        check_unique(conventions, where)
        callees = tuple(dict.fromkeys(c for conv in conventions for c in conv.callees))
    else:
        callees = tuple(step_callees)
        if not callees or any(not isinstance(c, str) or not c.strip() for c in callees):
            raise WorkflowError("step callee patterns must be non-empty strings", where=where)
        conventions = from_callees(callees)
    if module is None:
        module = parse_module(source, where)
    positions, code = positions_and_code(module)
    _check_round_trip(code, source, where)
    wf = Workflow(source, path, module, entry, callees, conventions, dict(files or {}),
                  {_POSITIONS: positions})
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
    # Imported here: reading steps needs the model types this module defines.
    from flowmend.engine._steps import Modeller

    return Modeller(wf, wf.path or "<workflow>").build(strict=strict)


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
