"""The data flow between steps: a may-reach analysis of step outputs through variables, calls and
instance attributes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import libcst as cst

from flowmend.engine._cstutil import (
    calls_in, dotted_name, names_read, param_names, pattern_names, self_param,
)

if TYPE_CHECKING:
    from flowmend.engine._steps import Modeller, RawStep

_READ_ONLY_METHODS = frozenset({
    "format", "format_map", "join", "replace", "strip", "lstrip", "rstrip", "split", "rsplit",
    "splitlines", "startswith", "endswith", "lower", "upper", "casefold", "count", "find",
    "rfind", "index", "rindex", "encode", "decode", "get", "partition", "rpartition",
    "removeprefix", "removesuffix", "center", "ljust", "rjust", "zfill", "expandtabs",
})


class DataFlow:
    """A may-reach analysis of step outputs through variables.

    Within a function it is flow-sensitive (straight-line code is exact; branches and loops
    join); across functions it is conservative: call arguments flow into the callee's
    parameters, a callee's return value carries every origin it may return, and ``self``
    attributes are shared by all methods of a class.
    """

    def __init__(self, modeller: Modeller, reachable: list[str], raw: list[RawStep]):
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

    def run(self) -> "DataFlow":
        for q in self.reachable:
            node, cls = self.mod.functions[q]
            reason = self.mod.facts(q).dynamic
            if reason:
                self.dynamic[q] = reason
            self_name = self_param(node) if cls else None
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
            found = self._scoped[key] = (names_read(node, self_name), calls_in(node))
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
                    f"it may read the output of the step at line {self.mod.line(self.raw[origin_step(origin)].call)} "
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


def origin_step(origin: int) -> int:
    return origin if origin >= 0 else -origin - 1


def _approx_all(origins) -> frozenset[int]:
    return frozenset(_approx(o) for o in origins)


_State = dict  # variable -> frozenset of step indices whose output it may hold


class _FunctionFlow:
    def __init__(self, flow: DataFlow, qualname: str):
        self.flow = flow
        self.qualname = qualname
        self.node, self.cls = flow.mod.functions[qualname]
        self.self_name = self_param(self.node) if self.cls else None
        self.instances = flow.mod.instances(qualname)
        self.locals = flow.mod.facts(qualname).local_names

    def run(self) -> None:
        state: _State = {}
        incoming = self.flow.params_in[self.qualname]
        for name in param_names(self.node.params):
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
                for name in pattern_names(case.pattern):
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


def _join_into(state: _State, other: _State) -> None:
    for name, origins in other.items():
        state[name] = state.get(name, frozenset()) | origins
