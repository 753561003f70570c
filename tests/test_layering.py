"""The import graph points one way (DESIGN.md): cli → meta → bench → engine → verifier →
llm, sandbox → task, errors; operators → engine. Command-line libraries live in the cli wing.

Proved on the source with `ast`: every import statement counts, at module level or inside a
function, except under `if __name__ == "__main__":` (a benchmark script's own entry point may
hand over to the command line). The engine reaches operators only through the library loader,
by name, never by an import statement.
"""

import ast
from pathlib import Path

import flowmend

ROOT = Path(flowmend.__file__).parent

# Higher imports lower; equal ranks of different packages do not import each other.
RANK = {
    "__main__": 9, "cli": 8, "meta": 7, "bench": 6, "operators": 5, "engine": 4, "verifier": 3,
    "llm": 2, "sandbox": 2, "seeds": 1, "task": 1, "_files": 0, "__init__": 0, "errors": -1,
}
COMMAND_LINE_ONLY = ("argparse", "rich")


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        if "._inner" in name:
            continue  # runs inside the sandbox, with no flowmend package on its path
        yield name, path


def _imports(module: str, path: Path):
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def _violations():
    found = []
    for module, path in _modules():
        mine = _package(module)
        for lineno, target in _imports(module, path):
            top = target.split(".")[0]
            where = f"{path.relative_to(ROOT.parent)}:{lineno}"
            if top in COMMAND_LINE_ONLY and mine not in ("cli", "__main__"):
                found.append(f"{where}: {module} imports {target} (command-line only)")
            if top != "flowmend" or "." not in target:
                continue
            theirs = target.split(".")[1]
            if theirs not in RANK or theirs == mine:
                continue
            if RANK.get(mine, 0) <= RANK[theirs]:
                found.append(f"{where}: {module} ({mine}) imports {target} ({theirs})")
    return sorted(set(found))


def test_imports_point_one_way_and_the_command_line_stays_in_its_wing():
    assert _violations() == []


def test_the_check_sees_a_wrong_way_import(tmp_path, monkeypatch):
    bad = ROOT / "engine" / "_layering_probe.py"
    bad.write_text("import rich\nfrom flowmend.bench import splits\nfrom flowmend.operators import add_step\n")
    try:
        found = "\n".join(_violations())
    finally:
        bad.unlink()
    assert "imports rich" in found
    assert "imports flowmend.bench" in found
    assert "imports flowmend.operators" in found
