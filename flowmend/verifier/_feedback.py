"""Feedback `b = F(x, π, τ, y)`: what the verifier can say about one run without ground truth."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import threading
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from flowmend.task import Task
from flowmend.verifier._visible import visible_checks_from_docstring
from flowmend.verifier.runtime_helpers import Check, extract_code

if TYPE_CHECKING:
    from flowmend.sandbox import CheckResult, Limits, Sandbox

__all__ = [
    "CheckCache", "CheckOutcome", "Cost", "Feedback", "SyntaxProblem", "feedback", "instrument_check",
]

FEEDBACK_SCHEMA = "flowmend.feedback/1"
_MESSAGE_CHARS = 200
_GOT = "_flowmend_got"
_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
# How an indented function body can begin: a statement keyword, a string or comment, or a name
# being assigned, called, indexed or its attribute read. Indented prose does not match.
_BODY_START = re.compile(
    r"[ \t]+(?:(?:return|if|for|while|try|with|raise|assert|pass|yield|import|from|def|class|"
    r"global|nonlocal|del|async|await|lambda|match)\b|[\"'#]|[A-Za-z_]\w*\s*(?:[-+*/%|&^]?=|\(|\[|\.))"
)


@dataclass(frozen=True)
class SyntaxProblem:
    """Why the code does not compile, and where (1-based line and column in `Feedback.code`)."""

    message: str
    line: int | None = None
    offset: int | None = None
    text: str = ""


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict.

    Attributes:
        check: the check's source, as the task gives it (``assert f(1) == 2``).
        status: "passed", "failed" (its assertion did not hold), "error" (it raised something
            else), "timeout", or "not_run" (the code never loaded).
        error_type: the exception type name for "failed" and "error".
        message: the assertion's or exception's message, e.g. ``got 3``.
    """

    check: str
    status: str
    error_type: str | None = None
    message: str = ""


@dataclass(frozen=True)
class Cost:
    """What the run spent, from its trace. ``units`` are the LLM price table's cost units."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    units: float = 0.0
    wall_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_trace(cls, trace: "Cost | Mapping[str, Any] | Iterable[Mapping[str, Any]] | None") -> "Cost":
        """Totals from a trace summary mapping, or summed over a trace's LLM call records.

        A summary has any of ``calls``, ``prompt_tokens``, ``completion_tokens``, ``tokens``,
        ``cost`` and ``wall_s``. Call records (JSON of `flowmend.llm.Completion`, or trace lines
        with ``"kind": "llm"``) are summed. When no cost is given, a token costs one unit, as a
        local model does.
        """
        if trace is None:
            return cls()
        if isinstance(trace, Cost):
            return trace
        if isinstance(trace, Mapping):
            prompt = int(trace.get("prompt_tokens", 0))
            completion = int(trace.get("completion_tokens", 0))
            tokens = int(trace.get("tokens", prompt + completion))
            if not (prompt or completion):
                prompt = tokens
            return cls(
                calls=int(trace.get("calls", trace.get("llm_calls", 0))),
                prompt_tokens=prompt,
                completion_tokens=completion,
                units=float(trace.get("cost", tokens)),
                wall_s=float(trace.get("wall_s", 0.0)),
            )
        calls = prompt = completion = 0
        units = 0.0
        for record in trace:
            if record.get("kind", "llm") != "llm":
                continue
            calls += 1
            p, c = int(record.get("prompt_tokens", 0)), int(record.get("completion_tokens", 0))
            prompt += p
            completion += c
            units += float(record.get("cost", p + c))
        return cls(calls=calls, prompt_tokens=prompt, completion_tokens=completion, units=units)


@dataclass(frozen=True)
class Feedback:
    """The verifier's structured result for one run of one candidate on one task.

    Attributes:
        task_id: the task.
        code: the program that was checked (extracted from the output, maybe completed from the
            prompt; see `assembled`).
        compiled: whether ``code`` compiles.
        syntax_error: why it does not, with the line.
        runtime_error: exception type name when loading the code or running a check raised
            something other than a failed assertion ("Timeout" for a time limit).
        runtime_message: that exception's message, with the line when known.
        checks: the visible checks' outcomes, in task order.
        self_checks: outcomes of tests the workflow wrote for itself: a separate signal.
        violations: broken constraints: no code, entry point missing, incompatible signature.
        cost: what the run spent.
        assembled: the output was a function body and the code is the task prompt plus it.

    It holds no score: whoever ranks candidates calls `score(feedback, weights)`.
    """

    task_id: str
    code: str
    compiled: bool
    syntax_error: SyntaxProblem | None = None
    runtime_error: str | None = None
    runtime_message: str = ""
    checks: tuple[CheckOutcome, ...] = ()
    self_checks: tuple[CheckOutcome, ...] = ()
    violations: tuple[str, ...] = ()
    cost: Cost = field(default_factory=Cost)
    assembled: bool = False

    @property
    def passed(self) -> int:
        return sum(c.status == "passed" for c in self.checks)

    @property
    def failed(self) -> int:
        return len(self.checks) - self.passed

    @property
    def total(self) -> int:
        return len(self.checks)

    @property
    def passed_ratio(self) -> float:
        """Passed visible checks over all of them; without checks, 1.0 for clean code, else 0.0."""
        if self.checks:
            return self.passed / len(self.checks)
        clean = self.compiled and self.runtime_error is None and not self.violations
        return 1.0 if clean else 0.0

    @property
    def self_passed_ratio(self) -> float:
        if not self.self_checks:
            return 0.0
        return sum(c.status == "passed" for c in self.self_checks) / len(self.self_checks)

    @property
    def kind(self) -> str:
        """One of `runtime_helpers.CHECK_KINDS`, the most severe problem first."""
        if not self.code.strip():
            return "no_code"
        if self.syntax_error is not None:
            return "syntax_error"
        if self.runtime_error is not None:
            return "runtime_error"
        if self.failed or self.violations:
            return "failing_check"
        return "ok"

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    def to_check(self, max_chars: int = 600) -> Check:
        """The `Check` that a workflow's ``verify(code)`` returns for this feedback."""
        return Check(self.ok, self.kind, self.summary(max_chars=max_chars))

    def summary(self, max_chars: int = 600) -> str:
        """A short, localised account for the optimizer: the error line, which check failed."""
        lines = []
        kind = self.kind
        if kind == "no_code":
            lines.append("no Python code found in the output")
        elif self.syntax_error is not None:
            err = self.syntax_error
            where = f" at line {err.line}" if err.line else ""
            lines.append(f"syntax error{where}: {err.message}")
            if err.text.strip():
                lines.append(f"  {err.line or '?'} | {err.text.strip()}")
        lines.extend(f"violation: {v}" for v in self.violations if kind != "no_code")
        if self.runtime_error is not None and not any(c.status in ("error", "timeout") for c in self.checks):
            message = f": {self.runtime_message}" if self.runtime_message else ""
            lines.append(f"{self.runtime_error} while loading the code{message}")
        if self.checks and self.compiled:
            lines.append(f"{self.passed}/{self.total} visible checks passed")
            # Unrun checks (the code never loaded, or time ran out) are in the count only.
            lines.extend(_describe(c) for c in self.checks if c.status not in ("passed", "not_run"))
        elif self.compiled and kind == "ok":
            lines.append("the code loads; the task has no visible checks")
        if self.self_checks and self.compiled:
            passed = sum(c.status == "passed" for c in self.self_checks)
            lines.append(f"{passed}/{len(self.self_checks)} self-checks passed")
        return _truncate("\n".join(lines), max_chars)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = FEEDBACK_SCHEMA
        data["checks"] = [asdict(c) for c in self.checks]
        data["self_checks"] = [asdict(c) for c in self.self_checks]
        data["violations"] = list(self.violations)
        data["kind"] = self.kind
        data["passed_ratio"] = self.passed_ratio
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Feedback":
        """The feedback of a `to_json()` object; derived keys (and the ``score`` that older
        records stored beside it) are ignored."""
        syntax = data.get("syntax_error")
        return cls(
            task_id=str(data["task_id"]),
            code=str(data["code"]),
            compiled=bool(data["compiled"]),
            syntax_error=SyntaxProblem(**syntax) if syntax else None,
            runtime_error=data.get("runtime_error"),
            runtime_message=str(data.get("runtime_message", "")),
            checks=tuple(CheckOutcome(**c) for c in data.get("checks", ())),
            self_checks=tuple(CheckOutcome(**c) for c in data.get("self_checks", ())),
            violations=tuple(str(v) for v in data.get("violations", ())),
            cost=Cost(**data.get("cost", {})),
            assembled=bool(data.get("assembled", False)),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


def feedback(
    task: Task,
    output: str,
    trace_summary: "Cost | Mapping[str, Any] | Iterable[Mapping[str, Any]] | None",
    sandbox: "Sandbox",
    *,
    self_checks: Sequence[str] = (),
    limits: "Limits | None" = None,
    test_timeout_s: float = 3.0,
    cache: "CheckCache | None" = None,
) -> Feedback:
    """Verify one output ``y`` of a workflow on ``task``.

    The code is `extract_code(output, task.entry_point)`; when it does not define the entry
    point but ``task.prompt + output`` does (a model that continued the prompt with the body),
    that is the code. The visible checks are ``task.visible_tests``, or, when the task has
    none, the examples of its docstring (`visible_checks_from_docstring`). They run in
    ``sandbox`` together with ``self_checks``, each under ``test_timeout_s``; with a
    ``cache``, code already checked the same way is not run again.
    """
    cost = Cost.from_trace(trace_summary)
    output = output if isinstance(output, str) else ("" if output is None else str(output))
    signature = _function(_parse(task.prompt), task.entry_point)
    code, tree, assembled = _program(task, output, signature)
    checks = tuple(task.visible_tests) or visible_checks_from_docstring(task.prompt, task.entry_point)
    base = Feedback(
        task_id=task.task_id,
        code=code,
        compiled=False,
        checks=tuple(CheckOutcome(c, "not_run") for c in checks),
        self_checks=tuple(CheckOutcome(c, "not_run") for c in self_checks),
        cost=cost,
        assembled=assembled,
    )
    if not code.strip():
        violation = "the output contains no Python code" if output.strip() else "the output is empty"
        return replace(base, violations=(violation,))
    problem = _compile(code)
    if problem is not None or tree is None:
        return replace(base, syntax_error=problem or SyntaxProblem("the code does not parse"))
    violations = _violations(task.entry_point, tree, signature)
    runnable = list(checks) + list(self_checks)
    tests = [instrument_check(t, task.entry_point) for t in runnable]

    def run_checks() -> _Checked:
        kwargs: dict[str, Any] = {"test_timeout_s": test_timeout_s}
        if limits is not None:
            kwargs["limits"] = limits
        return _outcomes(sandbox.check(code, tests, **kwargs), runnable)

    if cache is None:
        outcomes, runtime_error, runtime_message = run_checks()
    else:
        key = _check_key(code, runnable, tests, test_timeout_s, limits)
        outcomes, runtime_error, runtime_message = cache.get(key, run_checks)
    return replace(
        base,
        compiled=True,
        checks=outcomes[: len(checks)],
        self_checks=outcomes[len(checks) :],
        violations=violations,
        runtime_error=runtime_error,
        runtime_message=runtime_message,
    )


# What running the checks on one code came to: outcomes, runtime error type, its message.
_Checked = tuple[tuple[CheckOutcome, ...], "str | None", str]


class CheckCache:
    """The check verdicts of one repair, keyed by a hash of the code and of the checks.

    A workflow that calls ``verify(code)`` on its final answer and the feedback on that same
    output would run the same checks twice; with one cache per repair they run once. It is
    owned by the repair, never global, so nothing leaks between tasks or set-ups.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verdicts: dict[str, _Checked] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str, compute: "Callable[[], _Checked]") -> _Checked:
        with self._lock:
            found = self._verdicts.get(key)
            if found is not None:
                self.hits += 1
                return found
            self.misses += 1
        verdict = compute()  # outside the lock: candidates check in parallel
        with self._lock:
            self._verdicts.setdefault(key, verdict)
        return verdict


def _check_key(code: str, checks: Sequence[str], tests: Sequence[str], timeout_s: float,
               limits: "Limits | None") -> str:
    data = json.dumps([code, list(checks), list(tests), timeout_s, repr(limits)])
    return hashlib.sha256(data.encode()).hexdigest()


def instrument_check(check: str, entry_point: str | None = None) -> str:
    """``assert f(x) == v`` rewritten to report what it got: ``assert (_flowmend_got := f(x)) == v, ...``.

    Checks of any other shape (and ones that already carry a message) come back unchanged.
    """
    try:
        tree = ast.parse(check)
    except SyntaxError:
        return check
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert) or tree.body[0].msg is not None:
        return check
    node = tree.body[0]
    test = node.test
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return check
    holder, attr = test, "left"
    left = test.left
    # abs(f(x) - v) < tol: report f(x), not the difference.
    if (
        isinstance(left, ast.Call)
        and isinstance(left.func, ast.Name)
        and left.func.id == "abs"
        and len(left.args) == 1
        and isinstance(left.args[0], ast.BinOp)
        and isinstance(left.args[0].op, ast.Sub)
    ):
        holder, attr = left.args[0], "left"
    target = getattr(holder, attr)
    if entry_point and not any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == entry_point
        for n in ast.walk(target)
    ):
        return check
    setattr(holder, attr, ast.NamedExpr(target=ast.Name(_GOT, ast.Store()), value=target))
    node.msg = ast.parse(f"'got ' + repr({_GOT})[:{_MESSAGE_CHARS}]", mode="eval").body
    return ast.unparse(tree)


def _program(task: Task, output: str, signature: _FunctionNode | None) -> tuple[str, ast.Module | None, bool]:
    """The code to check, its parse tree (None when it does not parse), and whether it was assembled."""
    code = extract_code(output, task.entry_point)
    tree = _parse(code)
    if task.entry_point in _bound_names(tree):
        return code, tree, False
    # A completion model continues the prompt: its output is the indented body of the
    # prompt's function. The joined function must have a body beyond its docstring.
    continues = output.lstrip("\n")[:1] in (" ", "\t")
    if continues and signature is not None:
        joined = extract_code(task.prompt + output, task.entry_point)
        joined_tree = _parse(joined)
        function = _function(joined_tree, task.entry_point)
        if function is not None and _has_body(function):
            return joined, joined_tree, True
        if _BODY_START.match(output.strip("\n")):
            # A body cut off at max_tokens (or echoing the docstring without closing it):
            # broken code is still code, and its syntax error is what the optimizer should see.
            broken = (task.prompt + output).rstrip()
            return broken, _parse(broken), True
    return code, tree, False


def _has_body(function: _FunctionNode) -> bool:
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return bool(body)


def _compile(code: str) -> SyntaxProblem | None:
    try:
        compile(code, "<candidate>", "exec", dont_inherit=True)
    except SyntaxError as err:
        return SyntaxProblem(str(err.msg), err.lineno, err.offset, err.text or "")
    except ValueError as err:  # NUL bytes
        return SyntaxProblem(str(err))
    return None


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: NUL bytes
        return None


def _bound_names(tree: ast.Module | None) -> set[str]:
    """Names the module binds at top level (also inside top-level if/try/with blocks)."""
    if tree is None:
        return set()
    names: set[str] = set()
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            for part in ("body", "orelse", "finalbody"):
                stack.extend(getattr(node, part, []))
            stack.extend(s for h in getattr(node, "handlers", []) for s in h.body)
    return names


def _function(tree: ast.Module | None, name: str) -> _FunctionNode | None:
    """The module-level function ``name`` (the last definition wins, as at run time)."""
    found = None
    for node in tree.body if tree is not None else ():
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            found = node
    return found


def _violations(ep: str, tree: ast.Module, signature: _FunctionNode | None) -> tuple[str, ...]:
    """Broken constraints: ``ep`` unbound, or a signature that cannot take the prompt's call."""
    if ep not in _bound_names(tree):
        return (f"the entry point `{ep}` is not defined",)
    actual = _function(tree, ep)
    if signature is None or actual is None:
        return ()
    want_min, want_max = _positional_range(signature.args)
    have_min, have_max = _positional_range(actual.args)
    problems = []
    if have_min > want_min or have_max < want_max:
        problems.append(
            f"`{ep}` takes {_arity(have_min, have_max)} positional argument(s) but the prompt's "
            f"`def {ep}({ast.unparse(signature.args)})` takes {_arity(want_min, want_max)}"
        )
    required_kwonly = [
        a.arg for a, d in zip(actual.args.kwonlyargs, actual.args.kw_defaults) if d is None
    ]
    if required_kwonly:
        problems.append(f"`{ep}` requires keyword-only argument(s) {', '.join(required_kwonly)} the prompt does not have")
    return tuple(problems)


def _positional_range(args: ast.arguments) -> tuple[int, float]:
    positional = len(args.posonlyargs) + len(args.args)
    return positional - len(args.defaults), float("inf") if args.vararg else positional


def _arity(low: int, high: float) -> str:
    if high == float("inf"):
        return f"at least {low}"
    return str(low) if low == high else f"{low} to {int(high)}"


def _outcomes(result: "CheckResult", checks: Sequence[str]) -> tuple[tuple[CheckOutcome, ...], str | None, str]:
    """Per-check outcomes and the run's runtime error, read from a sandbox `CheckResult`."""
    by_index = {r.index: r for r in result.results}
    if result.status not in ("passed", "failed"):
        # The code never finished loading (or the child died): no check ran.
        run = result.run
        error = run.error_type or _LOAD_STATUS.get(result.status, result.status)
        line = _error_line(run.traceback_tail)
        message = _truncate(run.error_message or "", _MESSAGE_CHARS) + (f" (line {line})" if line else "")
        return tuple(CheckOutcome(c, "not_run") for c in checks), error, message
    runtime_error: str | None = None
    runtime_message = ""
    outcomes = []
    for i, check in enumerate(checks):
        r = by_index.get(i)
        if r is None:
            outcomes.append(CheckOutcome(check, "not_run"))
            continue
        message = _truncate(r.message or "", _MESSAGE_CHARS)
        if r.status == "passed":
            outcomes.append(CheckOutcome(check, "passed"))
        elif r.status == "failed":
            outcomes.append(CheckOutcome(check, "failed", r.error_type or "AssertionError", message))
        elif r.status == "not_run":
            outcomes.append(CheckOutcome(check, "not_run", r.error_type, message))
        else:  # error, timeout, memory, crash, output_limit, exited
            status = "timeout" if r.status == "timeout" else "error"
            error = r.error_type or _LOAD_STATUS.get(r.status, r.status)
            outcomes.append(CheckOutcome(check, status, error, message))
            if runtime_error is None:
                runtime_error, runtime_message = error, message
    return tuple(outcomes), runtime_error, runtime_message


# Error names for sandbox statuses that carry no exception type.
_LOAD_STATUS = {
    "timeout": "Timeout",
    "memory": "MemoryError",
    "crash": "Crash",
    "output_limit": "OutputLimit",
    "exited": "EarlyExit",
    "harness_error": "HarnessError",
}


def _error_line(traceback_tail: str | None) -> int | None:
    lines = re.findall(r'File "<candidate>", line (\d+)', traceback_tail or "")
    return int(lines[-1]) if lines else None


def _describe(outcome: CheckOutcome) -> str:
    label = {"failed": "FAILED", "error": "ERROR", "timeout": "TIMEOUT", "not_run": "NOT RUN"}.get(
        outcome.status, outcome.status.upper()
    )
    detail = outcome.message
    if outcome.status == "error" and outcome.error_type:
        detail = f"{outcome.error_type}: {detail}" if detail else outcome.error_type
    check = _truncate(outcome.check, 120)
    return f"{label} {check}" + (f" -- {detail}" if detail else "")


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 3)].rstrip() + "..."
