"""The operator base class, its typed results and argument handling, and the operator registry.

An operator is a typed edit of a workflow. Subclasses live in `flowmend.operators` (or in an
evolved-operator module); the registry loads them by module name, so the engine never imports
an operator module directly. `Operator.apply` never raises: every outcome is data.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import enum
import importlib
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Annotated, ClassVar, Literal, Union

import libcst as cst

from flowmend.engine._names import free_names
from flowmend.engine._workflow import Workflow

# Names a workflow may use without defining them: the runtime injects them into its globals.
RUNTIME_NAMES = frozenset({"llm", "verify", "extract_code", "Check"})

BUILTIN_OPERATOR_PACKAGE = "flowmend.operators"


class Reason(enum.Enum):
    """Why an operator did not produce a usable workflow."""

    UNKNOWN_OPERATOR = "unknown-operator"
    UNKNOWN_STEP = "unknown-step"
    BAD_TARGET = "bad-target"
    BAD_ARGS = "bad-args"
    PRECONDITION = "precondition"  # the target is not one of the operator's sites
    PLACEHOLDER = "placeholder"  # a rewrite would drop a placeholder that reads a live variable
    SHARED_CONSTANT = "shared-constant"  # a module-level prompt constant is used by other steps
    DATA_FLOW = "data-flow"  # the edit would break which values reach which steps
    PARSE = "parse"
    COMPILE = "compile"
    SIGNATURE = "signature"  # the entry function's signature changed
    FREE_VARIABLE = "free-variable"  # the edit reads a name nothing defines
    INTERNAL = "internal"  # the operator itself crashed: a bug, reported as data


@dataclass(frozen=True)
class Applied:
    """The operator produced a new workflow that passed the post-application checks.

    Attributes:
        source: the new workflow's source.
        diff: unified diff of the parent's source against it.
        workflow: the new workflow, made from the module the checks parsed: nobody parses it
            again.
        library_digest: the digest of the operator library the patch was applied with (set
            by `apply_patch`; None for a direct `Operator.apply`).
    """

    source: str
    diff: str
    workflow: Workflow = field(compare=False, repr=False)
    library_digest: str | None = None


@dataclass(frozen=True)
class NotApplicable:
    """The operator does not apply at this target with these arguments; nothing was edited."""

    reason: Reason
    detail: str


@dataclass(frozen=True)
class Invalid:
    """The request was malformed, or the edited workflow failed a post-application check."""

    reason: Reason
    detail: str


Result = Union[Applied, NotApplicable, Invalid]


@dataclass(frozen=True)
class Case:
    """An example on an operator class, run by one parametrised test for every operator.

    Attributes:
        before: workflow source (dedented before use).
        args: the operator's arguments as JSON data.
        after: the expected source, or None for a not-applicable case.
        target: the site, e.g. ``{"step": "code"}``; None means the operator's first site for an
            example, and "the operator lists no site at all" for a not-applicable case.
        entry: the workflow's entry function.
    """

    before: str
    args: dict = field(default_factory=dict)
    after: str | None = None
    target: dict | None = None
    entry: str = "solve"


class Refusal(Exception):
    """Raised inside an operator's `transform` to refuse; `apply` turns it into a result."""

    def __init__(self, reason: Reason, detail: str, *, invalid: bool = False):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.invalid = invalid

    def result(self) -> NotApplicable | Invalid:
        kind = Invalid if self.invalid else NotApplicable
        return kind(self.reason, self.detail)


# ---------------------------------------------------------------------------------------------
# Argument dataclasses: bounds as `Annotated` metadata, a docstring line per field.


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


def check_bounds(args: Any) -> None:
    """Check every field of an argument dataclass against its type and bounds.

    Call it from the dataclass's `__post_init__`. Integers are accepted for float fields and
    stored as floats, so JSON ``1`` and ``1.0`` build equal arguments.
    """
    hints = typing.get_type_hints(type(args), include_extras=True)
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
    """The docstring line under each field of a dataclass (attribute docstrings, as Sphinx reads them)."""
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
    hints = typing.get_type_hints(cls, include_extras=True)
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


# ---------------------------------------------------------------------------------------------
# The base class.


class Operator:
    """A typed, checked edit of a workflow.

    Subclasses set the class attributes and implement `sites` and `transform`; `presets` and
    `edit_region` have defaults. `apply` validates the arguments and the target, runs
    `transform`, and checks the result (parses, compiles, entry signature unchanged, no free
    variable introduced).
    """

    name: ClassVar[str]
    kind: ClassVar[str]  # "prompt" | "structure"
    # Bumped when the operator's behaviour changes; part of the library digest.
    VERSION: ClassVar[int] = 1
    Args: ClassVar[type] = NoArgs
    # The argument the optimizer writes as free text (a new prompt), if any.
    TEXT_ARG: ClassVar[str | None] = None
    DESCRIPTION: ClassVar[str]
    EXAMPLES: ClassVar[list[Case]] = []
    NOT_APPLICABLE: ClassVar[list[Case]] = []
    # Operators whose second application with the same target and arguments changes nothing.
    IDEMPOTENT: ClassVar[bool] = False

    def sites(self, wf: Workflow) -> list[dict]:
        """Every target this operator applies to in `wf`, e.g. ``[{"step": "code"}]``."""
        raise NotImplementedError

    def presets(self, wf: Workflow, target: dict) -> list[Any]:
        """Argument presets the menu offers at `target`; defaults to the default arguments."""
        try:
            return [self.Args()]
        except (TypeError, ArgsError):
            return []

    def transform(self, wf: Workflow, target: dict, args: Any) -> cst.Module | str:
        """The libcst edit: a new module (or its source text). Raise `Refusal` to decline."""
        raise NotImplementedError

    def edit_region(self, wf: Workflow, target: dict, args: Any) -> list[tuple[int, int]]:
        """Line ranges (1-based, inclusive) of `wf.source` that an application may change.

        Everything outside them must come out byte-identical; the property tests check it.
        """
        raise NotImplementedError

    @classmethod
    def args_schema(cls) -> dict:
        return args_schema(cls.Args)

    @classmethod
    def parse_args(cls, data: Any) -> Any:
        return parse_args(cls.Args, data)

    def apply(self, wf: Workflow, target: dict, args: Any = None) -> Result:
        """Apply at `target` with `args`. Never raises.

        `args` is the operator's argument dataclass, taken as it is (it checked itself when it
        was built), or JSON data, checked here.
        """
        try:
            return self._apply(wf, target, args)
        except Refusal as refusal:
            return refusal.result()
        except RecursionError:
            return Invalid(Reason.INTERNAL, f"{self.name}: recursion limit reached")
        except Exception as err:  # noqa: BLE001 - results are data, never exceptions
            return Invalid(Reason.INTERNAL, f"{self.name}: {type(err).__name__}: {err}")

    def _apply(self, wf: Workflow, target: dict, args: Any) -> Result:
        if not isinstance(args, self.Args):
            try:
                args = self.parse_args({} if args is None else args)
            except ArgsError as err:
                return Invalid(Reason.BAD_ARGS, f"{self.name}: {err}")
        if not isinstance(target, dict):
            return Invalid(Reason.BAD_TARGET, f"{self.name}: target must be an object")
        for key in ("step", "with"):
            step_id = target.get(key)
            if step_id is None:
                continue
            try:
                wf.step(step_id)
            except (KeyError, TypeError):
                known = ", ".join(s.id for s in wf.steps) or "none"
                return NotApplicable(
                    Reason.UNKNOWN_STEP, f"{self.name}: no step {step_id!r} (steps: {known})"
                )
        # The menu listed the sites already; every candidate of one parent shares them.
        if target not in wf.cached(("sites", type(self)), lambda: self.sites(wf)):
            return NotApplicable(
                Reason.PRECONDITION, f"{self.name} does not apply at {_show_target(target)}"
            )
        module = self.transform(wf, target, args)
        return check_result(wf, module.code if isinstance(module, cst.Module) else str(module))


def _show_target(target: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in target.items()) or "{}"


# ---------------------------------------------------------------------------------------------
# Post-application checks.


def check_result(wf: Workflow, source: str) -> Applied | Invalid:
    """The checks every application passes, and the new workflow when `source` passes them.

    One parse (the new workflow keeps the module), one compile (the free-name check reads the
    compiled code): the new source parses, compiles, keeps the entry function's signature and
    reads no name that nothing defines.
    """
    try:
        new = cst.parse_module(source)
    except cst.ParserSyntaxError as err:
        return Invalid(Reason.PARSE, f"edited workflow does not parse: {err.message}")
    try:
        code = compile(source, wf.path or "<workflow>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as err:
        return Invalid(Reason.COMPILE, f"edited workflow does not compile: {err}")
    before = wf.cached(_SIGNATURE, lambda: entry_signature(wf.module, wf.entry))
    after = entry_signature(new, wf.entry)
    if before != after:
        return Invalid(
            Reason.SIGNATURE,
            f"entry {wf.entry} changed signature: {before or 'missing'} -> {after or 'missing'}",
        )
    reads = free_names(code)
    allowed = RUNTIME_NAMES | {c.split(".")[0] for c in wf.step_callees}
    introduced = reads - _free_names_of(wf) - allowed
    if introduced:
        return Invalid(
            Reason.FREE_VARIABLE, f"edit reads undefined name(s): {', '.join(sorted(introduced))}"
        )
    child = Workflow(source, wf.path, new, wf.entry, wf.step_callees, {_FREE_NAMES: reads})
    return Applied(source, unified_diff(wf.source, source, wf.path or "workflow.py"), child)


_SIGNATURE = "entry signature"
_FREE_NAMES = "free names"


def _free_names_of(wf: Workflow) -> frozenset[str]:
    """The parent's free names: known for a workflow an application made, else compiled once.

    A parent that does not compile has none to compare with, so every free name of an edit
    of it counts as new (its edits rarely compile anyway)."""

    def compute() -> frozenset[str]:
        try:
            return free_names(wf.source, wf.path or "<workflow>")
        except (SyntaxError, ValueError):
            return frozenset()

    return wf.cached(_FREE_NAMES, compute)


def entry_signature(module: cst.Module, entry: str) -> str | None:
    """The entry function's signature as source text (``async def solve(task) -> str``)."""
    node = find_function(module, entry)
    if node is None:
        return None
    prefix = "async def" if node.asynchronous else "def"
    returns = f" -> {module.code_for_node(node.returns.annotation)}" if node.returns else ""
    params = module.code_for_node(node.params)
    decorators = "".join(f"@{module.code_for_node(d.decorator)} " for d in node.decorators)
    return f"{decorators}{prefix} {node.name.value}({' '.join(params.split())}){returns}"


def find_function(module: cst.Module, qualified: str) -> cst.FunctionDef | None:
    """The function `qualified` (``solve`` or ``Flow.run``) defined at module or class level."""
    parts = qualified.split(".")
    body: Any = module.body
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        found = None
        for stmt in body:
            if last and isinstance(stmt, cst.FunctionDef) and stmt.name.value == part:
                found = stmt
            elif not last and isinstance(stmt, cst.ClassDef) and stmt.name.value == part:
                found = stmt
        if found is None:
            return None
        if last:
            return found
        body = found.body.body
    return None


def unified_diff(before: str, after: str, path: str = "workflow.py") -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )


# ---------------------------------------------------------------------------------------------
# The registry.


class RegistryError(Exception):
    """An operator class or module that cannot join the library."""


_REGISTRY: dict[str, type[Operator]] = {}
_LOADED: set[str] = set()


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator: validate an operator class and add it to the registry."""
    problems = validate_operator(cls)
    if problems:
        raise RegistryError(f"{cls.__qualname__}: {'; '.join(problems)}")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise RegistryError(f"operator name {cls.name!r} is taken by {existing.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def validate_operator(cls: type) -> list[str]:
    """What is wrong with an operator class, if anything (empty list: nothing)."""
    problems = []
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name != name.lower() or " " in name:
        problems.append(f"name must be kebab-case, got {name!r}")
    if getattr(cls, "kind", None) not in ("prompt", "structure"):
        problems.append("kind must be 'prompt' or 'structure'")
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
        except Exception as err:  # noqa: BLE001 - reported as a registration problem
            problems.append(f"Args has no JSON schema: {err}")
    for attr in ("EXAMPLES", "NOT_APPLICABLE"):
        cases = getattr(cls, attr, None)
        if not isinstance(cases, list) or not all(isinstance(c, Case) for c in cases):
            problems.append(f"{attr} must be a list of Case")
    if not getattr(cls, "EXAMPLES", None):
        problems.append("at least one example is required")
    return problems


def load_module(module_name: str) -> list[type[Operator]]:
    """Import an operator module by name (an evolved operator, say) and return the operators
    it registered. Registration validates each class; a bad one raises `RegistryError`."""
    load_builtins()
    module = importlib.import_module(module_name)
    _LOADED.add(module_name)
    return [c for c in _REGISTRY.values() if c.__module__ == module.__name__]


def load_builtins() -> None:
    """Load the built-in operators (`flowmend.operators`) and run the drift check."""
    if BUILTIN_OPERATOR_PACKAGE in _LOADED:
        return
    package = importlib.import_module(BUILTIN_OPERATOR_PACKAGE)
    package.load()
    _LOADED.add(BUILTIN_OPERATOR_PACKAGE)
    problems = drift(package)
    if problems:
        raise RegistryError("operator registry drift: " + "; ".join(problems))


def drift(package: types.ModuleType) -> list[str]:
    """Disagreements between the registry and the package's `__all__` (class names)."""
    exported = {
        getattr(package, n).name
        for n in getattr(package, "__all__", ())
        if isinstance(getattr(package, n, None), type)
        and issubclass(getattr(package, n), Operator)
    }
    registered = {n for n, c in _REGISTRY.items() if c.__module__.startswith(package.__name__ + ".")}
    problems = []
    if registered - exported:
        problems.append(f"registered but not in __all__: {', '.join(sorted(registered - exported))}")
    if exported - registered:
        problems.append(f"in __all__ but not registered: {', '.join(sorted(exported - registered))}")
    return problems


def get(name: str) -> type[Operator] | None:
    """The operator class called `name`, or None."""
    load_builtins()
    return _REGISTRY.get(name)


def all_operators() -> list[type[Operator]]:
    """Every registered operator class, by name."""
    load_builtins()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def names() -> list[str]:
    load_builtins()
    return sorted(_REGISTRY)


def apply(wf: Workflow, operator: str, target: dict, args: Any = None) -> Result:
    """Apply the operator called `operator`; an unknown name is an `Invalid` result."""
    cls = get(operator)
    if cls is None:
        return Invalid(Reason.UNKNOWN_OPERATOR, f"no operator {operator!r} (known: {', '.join(names())})")
    return cls().apply(wf, target, args)
