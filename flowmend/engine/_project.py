"""The project config: ``[tool.flowmend]`` in a ``pyproject.toml``, or a ``flowmend.toml``,
found by walking up from the workflow file. It names the entry, the step conventions, the
model names and default options, so that ``flowmend steps WORKFLOW.py`` needs no flags."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowmend.engine._convention import Convention, ConventionError, check_unique
from flowmend.errors import UserError


_KEYS = ("entry", "conventions", "models", "options")
_MODEL_KEYS = ("program", "optimizer")


class ProjectConfigError(UserError):
    """A project config that does not parse, or names unknown keys."""


@dataclass(frozen=True)
class ProjectConfig:
    """What a project config says; every field may be absent.

    Attributes:
        path: the file it was read from.
        entry: the workflow's entry function.
        conventions: the step conventions, first match wins; () when the file names none.
        models: model names by role (``program``, ``optimizer``).
        options: default values of command-line options, by option name (``max_tokens``).
    """

    path: str
    entry: str | None = None
    conventions: tuple[Convention, ...] = ()
    models: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "entry": self.entry,
            "conventions": [c.to_json() for c in self.conventions],
            "models": dict(self.models),
            "options": dict(self.options),
        }


def find_project_config(workflow: str | Path) -> ProjectConfig | None:
    """The config nearest the workflow: in its directory or the first parent that has one, a
    ``flowmend.toml`` before a ``pyproject.toml`` with a ``[tool.flowmend]`` table."""
    directory = Path(workflow).resolve().parent
    for folder in (directory, *directory.parents):
        own = folder / "flowmend.toml"
        if own.is_file():
            return read_project_config(own)
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            table = _load(pyproject).get("tool", {})
            if isinstance(table, Mapping) and "flowmend" in table:
                return _config(table["flowmend"], pyproject)
    return None


def read_project_config(path: str | Path) -> ProjectConfig:
    """A ``flowmend.toml`` (its keys at top level or under ``[tool.flowmend]``) or a
    ``pyproject.toml``'s ``[tool.flowmend]``."""
    path = Path(path)
    data = _load(path)
    tool = data.get("tool")
    if isinstance(tool, Mapping) and "flowmend" in tool:
        if path.name == "flowmend.toml" and set(data) - {"tool"}:
            raise ProjectConfigError("keys both at top level and under [tool.flowmend]",
                                     where=str(path))
        return _config(tool["flowmend"], path)
    if path.name == "pyproject.toml":
        raise ProjectConfigError("no [tool.flowmend] table", where=str(path))
    return _config(data, path)


def _load(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ProjectConfigError(f"not TOML: {err}", where=str(path)) from None
    except OSError as err:
        raise ProjectConfigError(f"cannot read: {err.strerror or err}", where=str(path)) from None


def _config(table: Any, path: Path) -> ProjectConfig:
    where = str(path)
    if not isinstance(table, Mapping):
        raise ProjectConfigError("[tool.flowmend] must be a table", where=where)
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ProjectConfigError(
            f"unknown key(s) {', '.join(unknown)} (known: {', '.join(_KEYS)})", where=where)
    entry = table.get("entry")
    if entry is not None and (not isinstance(entry, str) or not entry.strip()):
        raise ProjectConfigError("entry must be a function name", where=where)
    raw = table.get("conventions", [])
    if not isinstance(raw, list):
        raise ProjectConfigError("conventions must be an array of tables ([[conventions]])",
                                 where=where)
    try:
        conventions = tuple(Convention.from_json(c, where) for c in raw)
        check_unique(conventions, where)
    except ConventionError as err:
        raise ProjectConfigError(err.message, where=where) from None
    models = table.get("models", {})
    if not isinstance(models, Mapping) or any(
            k not in _MODEL_KEYS or not isinstance(v, str) for k, v in models.items()):
        raise ProjectConfigError(
            f"models must map {' and/or '.join(_MODEL_KEYS)} to model names", where=where)
    options = table.get("options", {})
    if not isinstance(options, Mapping):
        raise ProjectConfigError("options must be a table", where=where)
    return ProjectConfig(where, entry, conventions, dict(models), dict(options))
