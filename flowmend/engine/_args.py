"""Operator arguments: frozen dataclasses with bounds as `Annotated` metadata and a docstring
line per field, their checks, their JSON schema, and their JSON form."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
import weakref
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union


@dataclass(frozen=True)
class Between:
    """Inclusive numeric bounds of an argument: ``Annotated[int, Between(2, 5)]``."""

    lo: float
    hi: float


@dataclass(frozen=True)
class Text:
    """Length bounds of a text argument; ``one_line`` forbids line breaks."""

    min_len: int = 1
    max_len: int = 2000
    one_line: bool = False


@dataclass(frozen=True)
class Identifier:
    """A text argument that must be a Python identifier."""


class ArgsError(ValueError):
    """Arguments that do not fit an operator's argument dataclass."""


def type_hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of an argument dataclass, computed once per class.

    Computed while the class's module is importable: an operator loaded from a file lives in
    a module the library loader takes out of `sys.modules` again, where `typing` could no
    longer resolve its annotations.
    """
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls, include_extras=True)
    return hints


# Memos keyed by class, held weakly: a library dropped by the meta loop takes its classes along.
_HINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_DOCS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_bounds(args: Any) -> None:
    """Check every field of an argument dataclass against its type and bounds.

    Call it from the dataclass's `__post_init__`. Integers are accepted for float fields and
    stored as floats, so JSON ``1`` and ``1.0`` build equal arguments.
    """
    hints = type_hints(type(args))
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        checked = _check_value(f.name, value, hints[f.name])
        if checked is not value:
            object.__setattr__(args, f.name, checked)


def _check_value(name: str, value: Any, hint: Any) -> Any:
    base, bounds = _unannotate(hint)
    optional = False
    if _is_union(base):
        members = [m for m in typing.get_args(base) if m is not type(None)]
        optional = len(members) < len(typing.get_args(base))
        if len(members) != 1:
            raise ArgsError(f"{name}: unsupported union type {base!r}")
        base, more = _unannotate(members[0])
        bounds = bounds + more
    if value is None:
        if optional:
            return None
        raise ArgsError(f"{name} is required")
    if typing.get_origin(base) is Literal:
        choices = typing.get_args(base)
        if value not in choices:
            raise ArgsError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if base is bool:
        if not isinstance(value, bool):
            raise ArgsError(f"{name} must be true or false, got {value!r}")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArgsError(f"{name} must be an integer, got {value!r}")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ArgsError(f"{name} must be a number, got {value!r}")
        value = float(value)
        if value != value:
            raise ArgsError(f"{name} must be a number, got NaN")
    elif base is str:
        if not isinstance(value, str):
            raise ArgsError(f"{name} must be a string, got {value!r}")
    else:
        raise ArgsError(f"{name}: unsupported argument type {base!r}")
    for bound in bounds:
        if isinstance(bound, Between) and not bound.lo <= value <= bound.hi:
            raise ArgsError(f"{name} must be between {bound.lo:g} and {bound.hi:g}, got {value!r}")
        if isinstance(bound, Text):
            if not bound.min_len <= len(value) <= bound.max_len:
                raise ArgsError(
                    f"{name} must be {bound.min_len} to {bound.max_len} characters long, "
                    f"got {len(value)}"
                )
            if bound.one_line and ("\n" in value or "\r" in value):
                raise ArgsError(f"{name} must be one line")
            if not value.strip():
                raise ArgsError(f"{name} must not be blank")
        if isinstance(bound, Identifier) and not (value.isidentifier() and value.isascii()):
            raise ArgsError(f"{name} must be a Python identifier, got {value!r}")
    return value


def _unannotate(hint: Any) -> tuple[Any, tuple]:
    if typing.get_origin(hint) is Annotated:
        base, *meta = typing.get_args(hint)
        return base, tuple(meta)
    return hint, ()


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring line under each field of a dataclass (attribute docstrings, as Sphinx reads
    them); read from the source once per class, like `type_hints`."""
    docs = _DOCS.get(cls)
    if docs is None:
        docs = _DOCS[cls] = _read_field_docs(cls)
    return dict(docs)


def _read_field_docs(cls: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        if "doc" in f.metadata:
            docs[f.name] = f.metadata["doc"]
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return docs
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for stmt, nxt in zip(body, body[1:]):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs.setdefault(stmt.target.id, inspect.cleandoc(nxt.value.value).splitlines()[0])
    return docs


def args_schema(cls: type) -> dict:
    """A JSON schema (draft 2020-12 subset) for an argument dataclass."""
    hints = type_hints(cls)
    docs = field_docs(cls)
    properties: dict[str, dict] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        prop = _schema_of(hints[f.name])
        if f.name in docs:
            prop["description"] = docs[f.name]
        if f.default is not dataclasses.MISSING:
            prop["default"] = f.default
        else:
            required.append(f.name)
        properties[f.name] = prop
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def _schema_of(hint: Any) -> dict:
    base, bounds = _unannotate(hint)
    nullable = False
    if _is_union(base):
        members = [m for m in typing.get_args(base) if m is not type(None)]
        nullable = True
        base, more = _unannotate(members[0])
        bounds = bounds + more
    if typing.get_origin(base) is Literal:
        choices = list(typing.get_args(base))
        schema: dict[str, Any] = {"enum": choices + ([None] if nullable else [])}
        return schema
    json_type = _JSON_TYPES[base]
    schema = {"type": [json_type, "null"] if nullable else json_type}
    for bound in bounds:
        if isinstance(bound, Between):
            schema["minimum"], schema["maximum"] = bound.lo, bound.hi
            if base is int:
                schema["minimum"], schema["maximum"] = int(bound.lo), int(bound.hi)
        elif isinstance(bound, Text):
            schema["minLength"], schema["maxLength"] = bound.min_len, bound.max_len
            if bound.one_line:
                schema["pattern"] = r"^[^\r\n]*$"
        elif isinstance(bound, Identifier):
            schema["pattern"] = r"^[A-Za-z_][A-Za-z0-9_]*$"
    return schema


def parse_args(cls: type, data: Any) -> Any:
    """Build an argument dataclass from JSON data; `ArgsError` says which field is wrong and why."""
    if isinstance(data, cls):
        return data
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = args_to_json(data)  # the same operator's arguments, from another library's class
    if not isinstance(data, dict):
        raise ArgsError(f"arguments must be an object, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        expected = ", ".join(names) or "none"
        raise ArgsError(f"unknown argument(s) {', '.join(unknown)} (expected: {expected})")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ArgsError(f"missing argument(s) {', '.join(missing)}")
    try:
        return cls(**data)
    except ArgsError:
        raise
    except (TypeError, ValueError) as err:
        raise ArgsError(str(err)) from None


def args_to_json(args: Any) -> dict:
    """The JSON form of an argument dataclass (what a patch stores)."""
    return dataclasses.asdict(args)


@dataclass(frozen=True)
class NoArgs:
    """An operator without arguments."""

    def __post_init__(self) -> None:
        check_bounds(self)
