"""The operator library as a value: a set of operator classes by name, with a content digest.

`load_library(specs)` builds one in the manner of Fixit's `collect_rules`: the built-ins by
name, out-of-tree operators by module name or file, operators defined as data (a JSON file,
handed to the loader for its schema). A library is immutable; `menu`, `apply_patch` and the
loop take one, and every result names its digest. Two libraries holding two versions of one
operator live side by side in one process: a file is imported under a private module name and
taken out of `sys.modules` again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import inspect
import itertools
import json
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowmend.engine._args import args_schema, field_docs, type_hints
from flowmend.engine._operator import Case, Operator
from flowmend.errors import UserError

LIBRARY_SCHEMA = "flowmend.library/1"
BUILTIN_PACKAGE = "flowmend.operators"
BUILTIN_SPECS = ("builtin", "builtins")

# A loader for operators defined as data: the parsed JSON object and where it came from in,
# the operator classes out (raise `LibraryError` for a definition it refuses).
DataLoader = Callable[[dict, str], Sequence[type[Operator]]]
# The loaders of the data schemas flowmend knows, by module and function name: the engine
# reaches operator code only through the loader, never by an import statement.
BUILTIN_DATA_LOADERS = {"flowmend.macro/1": ("flowmend.operators._macro", "load")}


class LibraryError(UserError):
    """A spec that does not name a loadable operator library, or an operator that cannot join."""


@dataclass(frozen=True)
class LibraryEntry:
    """One operator of a library.

    Attributes:
        cls: the operator class.
        definition: what it was made from: its module's source, or its JSON definition.
        digest: sha256 over its name, `VERSION`, argument schema and definition.
    """

    cls: type[Operator]
    definition: str = field(repr=False)
    digest: str

    @classmethod
    def of(cls, operator: type[Operator], definition: str) -> "LibraryEntry":
        content = json.dumps(
            {
                "name": operator.name,
                "version": operator.VERSION,
                "args": args_schema(operator.Args),
                "definition": definition,
            },
            sort_keys=True,
        )
        return cls(operator, definition, hashlib.sha256(content.encode()).hexdigest())


@dataclass(frozen=True)
class OperatorLibrary:
    """An immutable collection of operator classes by name, with a content digest.

    Build one with `load_library` (or `default_library()` for the built-ins); derive others
    with `with_operators` and `without`.

    Attributes:
        entries: the operators, sorted by name.
        specs: what the library was loaded from (``builtin``, module names, paths).
        digest: sha256 over the entries' names and digests: equal libraries, equal digests.
    """

    entries: tuple[LibraryEntry, ...]
    specs: tuple[str, ...] = ()
    digest: str = field(init=False)
    _by_name: Mapping[str, LibraryEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, LibraryEntry] = {}
        for entry in self.entries:
            taken = by_name.get(entry.cls.name)
            if taken is not None:
                raise LibraryError(
                    f"two operators named {entry.cls.name!r}: {_where(taken.cls)} and "
                    f"{_where(entry.cls)}"
                )
            by_name[entry.cls.name] = entry
        entries = tuple(by_name[n] for n in sorted(by_name))
        lines = "".join(f"{e.cls.name} {e.digest}\n" for e in entries)
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "_by_name", types.MappingProxyType(by_name))
        object.__setattr__(self, "digest", hashlib.sha256(lines.encode()).hexdigest())

    def get(self, name: str) -> type[Operator] | None:
        """The operator class called `name`, or None."""
        entry = self._by_name.get(name)
        return entry.cls if entry is not None else None

    def entry(self, name: str) -> LibraryEntry | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return [e.cls.name for e in self.entries]

    def operators(self) -> list[type[Operator]]:
        """The operator classes, sorted by name."""
        return [e.cls for e in self.entries]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[type[Operator]]:
        return iter(self.operators())

    def __len__(self) -> int:
        return len(self.entries)

    def with_operators(self, *operators: type[Operator] | LibraryEntry) -> "OperatorLibrary":
        """A new library with these operators added: classes (validated, their module's source
        read) or entries of another library. A name already in this library is an error: take
        it out with `without` first."""
        for op in operators:
            name = op.cls.name if isinstance(op, LibraryEntry) else getattr(op, "name", None)
            if name in self._by_name:
                raise LibraryError(f"two operators named {name!r}", where=_where(self.get(name)))
        added = tuple(
            op if isinstance(op, LibraryEntry) else _entry(op, _source_of(op), where=_where(op))
            for op in operators
        )
        specs = self.specs + tuple(_where(e.cls) for e in added)
        return OperatorLibrary(self.entries + added, specs)

    def without(self, *names: str) -> "OperatorLibrary":
        """A new library without the operators called `names` (each must be in this one)."""
        missing = [n for n in names if n not in self._by_name]
        if missing:
            raise LibraryError(f"no operator(s) {', '.join(missing)} in this library")
        kept = tuple(e for e in self.entries if e.cls.name not in names)
        return OperatorLibrary(kept, self.specs + tuple(f"-{n}" for n in names))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": LIBRARY_SCHEMA,
            "digest": self.digest,
            "specs": list(self.specs),
            "operators": [
                {"name": e.cls.name, "version": e.cls.VERSION, "kind": e.cls.kind,
                 "digest": e.digest}
                for e in self.entries
            ],
        }


# ---------------------------------------------------------------------------------------------
# Loading.


def load_library(
    specs: Sequence[str] = ("builtin",),
    *,
    data_loaders: Mapping[str, DataLoader] | None = None,
) -> OperatorLibrary:
    """The library the specs name, in order; a name that two specs define is an error.

    Args:
        specs: each one of ``builtin`` (or ``builtins``: the eleven built-in operators); a
            dotted module name (``mypkg.my_operators``); a path to a ``.py`` file; a path to a
            ``.json`` file holding an operator defined as data (``{"schema": ..., ...}``).
            A module contributes every `Operator` subclass it defines with a ``name``.
        data_loaders: loaders for more data schemas (schema -> a function that builds operator
            classes from the JSON object), beside the built-in ``flowmend.macro/1``.

    Raises:
        LibraryError: one line naming the spec: unknown name or path, a module defining no
            operator, an operator that fails validation, two operators with one name.
    """
    if isinstance(specs, str):
        specs = (specs,)
    entries: list[LibraryEntry] = []
    for spec in specs:
        entries.extend(_load_spec(spec, data_loaders or {}))
    try:
        return OperatorLibrary(tuple(entries), tuple(specs))
    except LibraryError as err:
        raise LibraryError(err.message, where=", ".join(specs)) from None


@functools.cache
def default_library() -> OperatorLibrary:
    """The built-in operators (loaded once: a library is immutable)."""
    return load_library(("builtin",))


def _load_spec(spec: str, data_loaders: Mapping[str, DataLoader]) -> list[LibraryEntry]:
    if not isinstance(spec, str) or not spec.strip():
        raise LibraryError("a library spec must be a non-empty string", where=repr(spec))
    if spec in BUILTIN_SPECS:
        return _builtin_entries()
    path = Path(spec)
    if spec.endswith((".py", ".json")) or "/" in spec or "\\" in spec:
        if not path.is_file():
            raise LibraryError("no such file", where=spec)
        if path.suffix == ".json":
            return _data_entries(path, data_loaders)
        if path.suffix != ".py":
            raise LibraryError("an operator file is a .py module or a .json definition", where=spec)
        return _file_entries(path)
    try:
        module = importlib.import_module(spec)
    except ImportError as err:
        raise LibraryError(f"cannot import operator module: {err}", where=spec) from None
    return _module_entries(module, inspect.getsource(module), spec)


def _builtin_entries() -> list[LibraryEntry]:
    package = importlib.import_module(BUILTIN_PACKAGE)
    entries = []
    for module_name in package.MODULES:
        module = importlib.import_module(f"{BUILTIN_PACKAGE}.{module_name}")
        entries.extend(_module_entries(module, inspect.getsource(module), "builtin"))
    problems = drift(package, [e.cls for e in entries])
    if problems:
        raise LibraryError("built-in operators drift: " + "; ".join(problems), where="builtin")
    return entries


_PRIVATE_NAMES = itertools.count(1)


def _file_entries(path: Path) -> list[LibraryEntry]:
    """Import a file under a fresh private name, collect its operators, and take the module out
    of `sys.modules` again: the classes keep it alive, and a second file (or a second version
    of this one) defining the same names cannot collide with it."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise LibraryError(f"cannot read: {err}", where=str(path)) from None
    name = f"_flowmend_library_{next(_PRIVATE_NAMES)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LibraryError("cannot import this file", where=str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look the module up while it loads
    try:
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001 - any error in an imported file is the user's
            raise LibraryError(
                f"importing it raised {type(err).__name__}: {err}", where=str(path)
            ) from None
        return _module_entries(module, source, str(path))
    finally:
        sys.modules.pop(name, None)


def _data_entries(path: Path, data_loaders: Mapping[str, DataLoader]) -> list[LibraryEntry]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError) as err:
        raise LibraryError(f"cannot read: {err}", where=str(path)) from None
    except json.JSONDecodeError as err:
        raise LibraryError(f"not JSON: {err.msg}", where=f"{path}:{err.lineno}:{err.colno}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str):
        raise LibraryError('an operator defined as data is a JSON object with a "schema"', where=str(path))
    loader = data_loaders.get(schema)
    if loader is None and schema in BUILTIN_DATA_LOADERS:
        module, function = BUILTIN_DATA_LOADERS[schema]
        loader = getattr(importlib.import_module(module), function)
    if loader is None:
        raise LibraryError(f"no loader for schema {schema}", where=str(path))
    classes = list(loader(data, str(path)))
    if not classes:
        raise LibraryError("the definition makes no operator", where=str(path))
    return [_entry(c, text, where=str(path)) for c in classes]


def _module_entries(module: types.ModuleType, source: str, where: str) -> list[LibraryEntry]:
    classes = operators_in(module)
    if not classes:
        raise LibraryError("the module defines no operator (an Operator subclass with a name)", where=where)
    return [_entry(c, source, where=where) for c in classes]


def operators_in(module: types.ModuleType) -> list[type[Operator]]:
    """Every `Operator` subclass `module` itself defines with a ``name`` (imported ones and
    nameless intermediate classes are not its operators)."""
    return [
        value for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Operator)
        and value.__module__ == module.__name__ and "name" in vars(value)
    ]


def _entry(cls: type, definition: str, *, where: str) -> LibraryEntry:
    problems = validate_operator(cls)
    if problems:
        raise LibraryError(f"{cls.__qualname__}: {'; '.join(problems)}", where=where)
    type_hints(cls.Args)  # resolved now, while a file's module is still importable
    return LibraryEntry.of(cls, definition)


def _source_of(cls: type) -> str:
    module = sys.modules.get(getattr(cls, "__module__", ""))
    try:
        return inspect.getsource(module) if module is not None else inspect.getsource(cls)
    except (OSError, TypeError):
        raise LibraryError(
            "cannot read the source of this operator (load its file with load_library)",
            where=_where(cls),
        ) from None


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def validate_operator(cls: type) -> list[str]:
    """What is wrong with an operator class, if anything (empty list: nothing)."""
    if not (isinstance(cls, type) and issubclass(cls, Operator)):
        return [f"not an Operator subclass: {cls!r}"]
    problems = []
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name != name.lower() or " " in name:
        problems.append(f"name must be kebab-case, got {name!r}")
    if getattr(cls, "kind", None) not in ("prompt", "structure"):
        problems.append("kind must be 'prompt' or 'structure'")
    version = getattr(cls, "VERSION", None)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problems.append(f"VERSION must be a positive integer, got {version!r}")
    description = getattr(cls, "DESCRIPTION", "")
    if not isinstance(description, str) or not description or "\n" in description:
        problems.append("DESCRIPTION must be one line")
    args = getattr(cls, "Args", None)
    if not (dataclasses.is_dataclass(args) and args.__dataclass_params__.frozen):
        problems.append("Args must be a frozen dataclass")
    else:
        docs = field_docs(args)
        undocumented = [f.name for f in dataclasses.fields(args) if f.name not in docs]
        if undocumented:
            problems.append(f"Args field(s) without a docstring line: {', '.join(undocumented)}")
        try:
            args_schema(args)
        except Exception as err:  # noqa: BLE001 - reported as a validation problem
            problems.append(f"Args has no JSON schema: {err}")
        text_arg = getattr(cls, "TEXT_ARG", None)
        if text_arg is not None and text_arg not in {f.name for f in dataclasses.fields(args)}:
            problems.append(f"TEXT_ARG {text_arg!r} is not an argument")
    for attr in ("EXAMPLES", "NOT_APPLICABLE"):
        cases = getattr(cls, attr, None)
        if not isinstance(cases, list) or not all(isinstance(c, Case) for c in cases):
            problems.append(f"{attr} must be a list of Case")
    if not getattr(cls, "EXAMPLES", None):
        problems.append("at least one example is required")
    return problems


def drift(package: types.ModuleType, classes: Iterable[type[Operator]]) -> list[str]:
    """Disagreements between the operators the built-in modules define and the package's
    `__all__` (class names), both ways."""
    exported = {
        getattr(package, n).name
        for n in getattr(package, "__all__", ())
        if isinstance(getattr(package, n, None), type) and issubclass(getattr(package, n), Operator)
    }
    defined = {c.name for c in classes}
    problems = []
    if defined - exported:
        problems.append(f"defined but not in __all__: {', '.join(sorted(defined - exported))}")
    if exported - defined:
        problems.append(f"in __all__ but not defined: {', '.join(sorted(exported - defined))}")
    return problems
