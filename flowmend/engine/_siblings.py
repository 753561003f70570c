"""Prompts kept in a sibling module: ``import prompts`` or ``from . import prompts as p`` beside
the workflow, its string constants used at step calls (``instruction=prompts.REVIEW``).

A sibling is read once per workflow. A workflow an edit produced carries the edited siblings'
new text (`Workflow.files`), so it never reads the disk for a file it changed itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from flowmend.engine._cstutil import assignments, dotted_name
from flowmend.errors import UserError


@dataclass(frozen=True)
class Sibling:
    """A sibling module of the workflow: its file, text, libcst module and string constants."""

    path: str
    source: str
    module: cst.Module = field(compare=False, repr=False)
    constants: Mapping[str, str] = field(default_factory=dict)
    nodes: Mapping[str, cst.BaseExpression] = field(default_factory=dict, compare=False, repr=False)


def string_constants(module: cst.Module) -> tuple[dict[str, str], dict[str, cst.BaseExpression]]:
    """Module-level names assigned one plain string once: their text and their value node."""
    from flowmend.engine._steps import _string_value  # one reading of string literals

    texts: dict[str, str] = {}
    nodes: dict[str, cst.BaseExpression] = {}
    assigned: dict[str, int] = {}
    for stmt in module.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            for target, value in assignments(small):
                if isinstance(target, cst.Name):
                    assigned[target.value] = assigned.get(target.value, 0) + 1
                    text = _string_value(value)
                    if text is not None:
                        texts[target.value] = text
                        nodes[target.value] = value
    for name, count in assigned.items():
        if count > 1:  # a name assigned twice is not a constant
            texts.pop(name, None)
            nodes.pop(name, None)
    return texts, nodes


def sibling_imports(module: cst.Module) -> dict[str, tuple[str, bool]]:
    """Module-level imports that may name a sibling module: alias -> (module name, relative).

    ``import prompts`` and ``import prompts as p`` (a sibling when the file exists beside the
    workflow); ``from . import prompts [as p]`` (relative: the file must exist).
    """
    found: dict[str, tuple[str, bool]] = {}
    for stmt in module.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Import):
                for alias in small.names:
                    name = dotted_name(alias.name)
                    if name and "." not in name:
                        bound = alias.asname.name.value if alias.asname else name
                        found[bound] = (name, False)
            elif isinstance(small, cst.ImportFrom) and small.module is None \
                    and len(small.relative) == 1 and not isinstance(small.names, cst.ImportStar):
                for alias in small.names:
                    name = dotted_name(alias.name)
                    if name:
                        bound = alias.asname.name.value if alias.asname else name
                        found[bound] = (name, True)
    return found


def sibling_path(workflow_path: str | None, name: str) -> Path | None:
    return Path(workflow_path).parent / f"{name}.py" if workflow_path else None


def sibling_sources(wf) -> dict[str, str]:
    """Module name -> source of every sibling module the workflow imports (an edit's new text
    where it changed one): what the sandbox must provide for the workflow to run."""
    found: dict[str, str] = {}
    for name, _relative in sibling_imports(wf.module).values():
        path = sibling_path(wf.path, name)
        if path is not None and (str(path) in wf.files or path.is_file()):
            found[name] = workflow_sibling(wf, path).source
    return found


def workflow_sibling(wf, path: str | Path, where: str | None = None) -> Sibling:
    """The sibling module at `path` as workflow `wf` sees it, read once per workflow."""
    key = str(path)
    return wf.cached(("sibling", key), lambda: read_sibling(Path(key), wf.files, where or key))


def read_sibling(path: Path, files: Mapping[str, str], where: str) -> Sibling:
    """The sibling at `path`, from `files` when an edit changed it, else from the disk.

    Raises:
        UserError: the file cannot be read, is not UTF-8, or is not Python (one line).
    """
    key = str(path)
    source = files.get(key)
    if source is None:
        try:
            with open(path, encoding="utf-8", newline="") as handle:
                source = handle.read()
        except UnicodeDecodeError as err:
            raise UserError(f"prompt module {path.name} is not UTF-8 text (byte {err.start})",
                            where=where) from None
        except OSError as err:
            raise UserError(f"cannot read prompt module {path.name}: {err.strerror or err}",
                            where=where) from None
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as err:
        raise UserError(f"prompt module {path.name} is not Python (line {err.raw_line})",
                        where=where) from None
    texts, nodes = string_constants(module)
    return Sibling(key, source, module, texts, nodes)
