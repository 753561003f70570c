"""libcst helpers of the workflow model: parents, path-copy rebuilding, positions with code,
dotted names, and the names a node binds, reads or calls."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

import libcst as cst
from libcst.metadata import CodeRange, PositionProvider
from libcst.metadata.position_provider import PositionProvidingCodegenState


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


def parent_map(module: cst.Module) -> dict[int, cst.CSTNode]:
    collector = _ParentCollector()
    module.visit(collector)
    return collector.parents


def rebuild(node: cst.CSTNode, new_of: dict[int, Any]) -> cst.CSTNode:
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


def dedupe(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def self_param(node: cst.FunctionDef) -> str | None:
    for deco in node.decorators:
        if dotted_name(deco.decorator) == "staticmethod":
            return None
    params = node.params.posonly_params or node.params.params
    return params[0].name.value if params else None


def assignments(small: cst.CSTNode) -> list[tuple[cst.BaseExpression, cst.BaseExpression]]:
    """(target, value) pairs of a simple assignment statement; tuple targets are skipped."""
    if isinstance(small, cst.Assign) and len(small.targets) == 1:
        return [(small.targets[0].target, small.value)]
    if isinstance(small, cst.AnnAssign) and small.value is not None:
        return [(small.target, small.value)]
    return []


def param_names(params: cst.Parameters) -> list[str]:
    found = [*params.posonly_params, *params.params, *params.kwonly_params]
    for star in (params.star_arg, params.star_kwarg):
        if isinstance(star, cst.Param):
            found.append(star)
    return [p.name.value for p in found]


def bound_names(target: cst.CSTNode) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in bound_names(e.value)]
    if isinstance(target, cst.StarredElement):
        return bound_names(target.value)
    return []


class _CallCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        self.calls: list[cst.Call] = []

    def visit_Call(self, node: cst.Call) -> None:
        self.calls.append(node)


def calls_in(node: cst.CSTNode) -> list[cst.Call]:
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
            bound = set(param_names(node.params))
            parts: list[cst.CSTNode] = [node.body]
        else:
            bound = set()
            comp = node.for_in
            while comp is not None:
                bound.update(bound_names(comp.target))
                comp = comp.inner_for_in
            parts = list(node.children)
        inner = _ReadCollector(self.self_name)
        for part in parts:
            part.visit(inner)
        self.names.extend(n for n in inner.names if n.split(".")[0] not in bound)
        return False

    visit_Lambda = visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _scoped  # type: ignore[assignment]


def names_read(node: cst.CSTNode, self_name: str | None) -> list[str]:
    collector = _ReadCollector(self_name)
    node.visit(collector)
    return collector.names


def pattern_names(pattern: cst.CSTNode) -> list[str]:
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
