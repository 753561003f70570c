"""Running one workflow on one task in the sandbox, with its LLM calls metered and traced.

The sandbox knows nothing of workflows: this module turns a workflow into a plain program (a
small harness, the runtime helpers and the workflow's source) whose `llm()` and `verify()`
leave the sandbox through its RPC channel. The parent answers them here: `llm` through the
model broker, under the repair's budget; `verify` by running the task's visible checks.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from flowmend.engine._checks import RUNTIME_NAMES
from flowmend.engine._reuse import RunAnswers
from flowmend.engine._workflow import Workflow
from flowmend.llm import Broker, Completion, Request, prompt_bytes_bound
from flowmend.sandbox import ExecResult, Limits, Sandbox, model_wait
from flowmend.task import Task
from flowmend.verifier import CheckCache, Cost, feedback
from flowmend.verifier.runtime_helpers import BudgetExhausted

# The helpers run inside the sandbox, where flowmend is not importable: their source is inlined
# into the harness, after the harness's own first lines (so no `from __future__` there).
_HELPERS = "\n".join(
    line
    for line in (Path(__file__).resolve().parent.parent / "verifier" / "runtime_helpers.py")
    .read_text()
    .splitlines()
    if not line.startswith("from __future__")
)

# Keyword arguments a workflow may pass to llm(); anything else is an error in the workflow.
_LLM_PARAMS = {"max_tokens", "temperature", "top_p", "n", "stop", "model"}

_HARNESS = r'''
import asyncio as _asyncio
import inspect as _inspect
import json as _json
import sys as _sys
import types as _types

import flowmend_rpc as _rpc

{helpers}

_WORKFLOW_FILE = "<workflow>"


def _workflow_lines():
    frame, lines = _sys._getframe(2), []
    while frame is not None:
        if frame.f_code.co_filename == _WORKFLOW_FILE:
            lines.append(frame.f_lineno)
        frame = frame.f_back
    return lines


class _Text(str):
    """A completion: a plain string that an async workflow may also `await`."""

    def __await__(self):
        return self
        yield


def llm(prompt, **params):
    try:
        answer = _rpc.call("llm", {{"prompt": prompt if isinstance(prompt, str) else str(prompt),
                                   "params": params, "lines": _workflow_lines()}})
    except _rpc.RPCError as err:
        if str(err).startswith("BudgetExhausted:"):
            message = str(err).partition(": ")[2]
            raise BudgetExhausted(message.removeprefix("the ").removesuffix(" budget is spent")) from None
        raise
    texts = [_Text(t) for t in answer["texts"]]
    return texts if params.get("n", 1) > 1 else texts[0]


class VerifyLimitExceeded(RuntimeError):
    """This run has made all the verify(code) calls it may (RepairConfig.max_verify_calls)."""


def verify(code):
    try:
        answer = _rpc.call("verify", {{"code": "" if code is None else str(code)}})
    except _rpc.RPCError as err:
        if str(err).startswith("VerifyLimitExceeded:"):
            raise VerifyLimitExceeded(str(err).partition(": ")[2]) from None
        raise
    return Check.from_json(answer)


def _siblings(namespace):
    # The workflow's sibling modules (prompts.py beside it), importable as `import prompts`
    # and, through a package the workflow belongs to, as `from . import prompts`.
    package = _types.ModuleType("_flowmend_workflow")
    package.__path__ = []
    _sys.modules["_flowmend_workflow"] = package
    for name, source in {modules}.items():
        module = _types.ModuleType(name)
        module.__package__ = "_flowmend_workflow"
        exec(compile(source, name + ".py", "exec"), module.__dict__)
        _sys.modules[name] = _sys.modules["_flowmend_workflow." + name] = module
        setattr(package, name, module)
    namespace["__package__"] = "_flowmend_workflow"


def _main():
    task = _types.SimpleNamespace(**{task})
    namespace = {{"__name__": "workflow", "llm": llm, "verify": verify,
                 "extract_code": extract_code, "Check": Check,
                 "VerifyLimitExceeded": VerifyLimitExceeded, "BudgetExhausted": BudgetExhausted}}
    if {modules}:
        _siblings(namespace)
    exec(compile({source}, _WORKFLOW_FILE, "exec"), namespace)
    entry = namespace.get({entry})
    if not callable(entry):
        raise NameError("the workflow defines no entry function " + {entry})
    output = entry(task)
    # A completion returned as is is awaitable (for async workflows) but already a string.
    if _inspect.isawaitable(output) and not isinstance(output, str):
        output = _asyncio.run(output)
    if isinstance(output, (list, tuple)) and output and all(isinstance(o, str) for o in output):
        output = output[0]
    _rpc.call("result", {{"output": None if output is None else str(output)}})


_main()
'''


class VerifyLimitExceeded(RuntimeError):
    """A run asked for more `verify(code)` calls than it may make; inside the workflow it is
    raised as the runtime's `VerifyLimitExceeded`, which the workflow may catch."""


@dataclass(frozen=True)
class Budget:
    """Hard caps for one repair: every LLM call (program and optimizer) counts.

    Attributes:
        calls: LLM calls.
        tokens: prompt plus completion tokens.
        cost: cost units (the model's price table; a local model costs its tokens).
        wall_s: wall time of the whole repair, in seconds.
    None means no cap.
    """

    calls: int | None = 40
    tokens: int | None = 30_000
    cost: float | None = None
    wall_s: float | None = 600.0

    def __post_init__(self) -> None:
        for name in ("calls", "tokens", "cost", "wall_s"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value <= 0):
                raise ValueError(f"budget {name} must be positive or None, got {value!r}")

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "tokens": self.tokens, "cost": self.cost, "wall_s": self.wall_s}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Budget":
        unknown = set(data) - {"calls", "tokens", "cost", "wall_s"}
        if unknown:
            raise ValueError(f"unknown budget field(s): {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass(frozen=True)
class Booking:
    """What `Meter.reserve` granted one call and holds for it until `Meter.settle`.

    Attributes:
        max_tokens: completion tokens per sample the call may ask for.
        n: samples the call may ask for (the calls cap may cut a request for more).
        tokens, cost: held against the caps until the call settles.
    """

    max_tokens: int
    n: int
    tokens: int
    cost: float


class Meter:
    """Spends a `Budget` from many threads at once and never lets a call pass a cap.

    Before a call, `reserve` books it: one call per sample asked for (the same rule for program
    and optimizer), its prompt tokens (exact where the backend counts) and its `max_tokens` per
    sample, cut down to what is left. `settle` replaces the booking by what the call really
    used. So concurrent candidates can never overspend together. A call that would get less
    than it asked for while other calls hold bookings waits for them to settle first (they
    usually use less than they booked), so no call is cut or refused for tokens that are only
    held; the wait ends at the wall-time cap.
    """

    def __init__(self, budget: Budget, *, clock: Callable[[], float] = time.monotonic):
        self.budget = budget
        self._clock = clock
        self._started = clock()
        self._cond = threading.Condition()
        self.calls = 0
        self.tokens = 0
        self.cost = 0.0
        self._held_tokens = 0
        self._held_cost = 0.0
        self._held = 0  # bookings not yet settled
        self.stopped_by: str | None = None

    def elapsed(self) -> float:
        return self._clock() - self._started

    def wall_left(self) -> float | None:
        if self.budget.wall_s is None:
            return None
        return self.budget.wall_s - self.elapsed()

    def exhausted(self) -> str | None:
        """The cap that is spent already, if any."""
        with self._cond:
            return self._exhausted_locked()

    def _exhausted_locked(self) -> str | None:
        b = self.budget
        if b.calls is not None and self.calls >= b.calls:
            return "calls"
        if b.tokens is not None and self.tokens + self._held_tokens >= b.tokens:
            return "tokens"
        if b.cost is not None and self.cost + self._held_cost >= b.cost:
            return "cost"
        if b.wall_s is not None and self.elapsed() >= b.wall_s:
            return "wall_time"
        return None

    def _refuse(self, limit: str) -> BudgetExhausted:
        self.stopped_by = self.stopped_by or limit
        return BudgetExhausted(limit)

    def _allowance(self, prompt_tokens: int, max_tokens: int, n: int,
                   price: tuple[float, float]) -> tuple[int, str | None]:
        """Completion tokens per sample that fit now, and the cap that cuts them (if any)."""
        allowed, cut = max_tokens, None
        b = self.budget
        if b.tokens is not None:
            left = b.tokens - self.tokens - self._held_tokens - prompt_tokens
            if left // n < allowed:
                allowed, cut = left // n, "tokens"
        if b.cost is not None and price[1] > 0:
            left = b.cost - self.cost - self._held_cost - price[0] * prompt_tokens
            if int(left / (price[1] * n)) < allowed:
                allowed, cut = int(left / (price[1] * n)), "cost"
        return allowed, cut

    def reserve(self, prompt_tokens: int, max_tokens: int, n: int, price: tuple[float, float]
                ) -> Booking:
        """Book a call of `n` samples; returns what it may ask for and what is held for it.

        Raises BudgetExhausted when not even one sample of one completion token fits.
        """
        n = max(n, 1)
        with self._cond:
            while True:
                limit = self._exhausted_locked()
                if limit is not None:
                    raise self._refuse(limit)
                if self.budget.calls is not None:
                    n = min(n, self.budget.calls - self.calls)
                allowed, cut = self._allowance(prompt_tokens, max_tokens, n, price)
                wall_left = self.wall_left()
                if cut is None or not self._held or (wall_left is not None and wall_left <= 0):
                    break
                self._cond.wait(timeout=wall_left)
            if allowed < 1:
                raise self._refuse(cut or "tokens")
            booking = Booking(allowed, n, prompt_tokens + allowed * n,
                              price[0] * prompt_tokens + price[1] * allowed * n)
            self.calls += n
            self._held += 1
            self._held_tokens += booking.tokens
            self._held_cost += booking.cost
            return booking

    def settle(self, booking: Booking, completion: Completion | None) -> None:
        with self._cond:
            self._held -= 1
            self._held_tokens -= booking.tokens
            self._held_cost -= booking.cost
            if completion is not None:
                self.tokens += completion.prompt_tokens + completion.completion_tokens
                self.cost += completion.cost
            self._cond.notify_all()


def prompt_token_bound(broker: Broker, request: Request) -> int:
    """The prompt tokens `request` will take on `broker`'s model, for the budget to book.

    Exact where the backend counts (`Backend.count_prompt_tokens`: a tokenizer with its chat
    template, a server's tokenize endpoint, a recording); otherwise, and when counting fails
    (the call itself will then fail and say why), the byte bound `prompt_bytes_bound`.
    """
    try:
        return int(broker.backend.count_prompt_tokens(request))
    except Exception:  # noqa: BLE001 - the broker reports a bad request; the bound is safe
        return prompt_bytes_bound(request)


def metered_call(broker: Broker, meter: Meter, request: Request) -> Completion:
    """One LLM call under the budget: booked, sent through the broker, settled.

    The request's `max_tokens` (and `n`, under a calls cap) are cut to what the budget can
    still pay; the completion then has fewer samples or shorter texts, never a refusal while
    one sample of one token fits.
    """
    backend = broker.backend
    prices = getattr(backend, "prices", None)
    price = (0.0, 0.0)
    if prices is not None:
        p = prices.price(backend.model)
        price = (p.prompt, p.completion)
    booking = meter.reserve(prompt_token_bound(broker, request), request.max_tokens, request.n,
                            price)
    if (booking.max_tokens, booking.n) != (request.max_tokens, request.n):
        request = replace(request, max_tokens=booking.max_tokens, n=booking.n)
    completion = None
    wall_left = meter.wall_left()
    try:
        completion = broker.call(request, timeout=None if wall_left is None else max(wall_left, 0.001))
        return completion
    except FutureTimeout:
        # The engine may still finish the request, but the repair must end inside its budget.
        meter.stopped_by = meter.stopped_by or "wall_time"
        raise BudgetExhausted("wall_time") from None
    finally:
        meter.settle(booking, completion)


@dataclass(frozen=True)
class CallRecord:
    """One LLM call as the trace keeps it.

    ``samples`` is what the budget counts it as: one call per sample drawn, 0 for a call the
    budget refused. A ``reused`` call was answered from the repair's greedy answers
    (`flowmend.engine._reuse`): nothing was sent and nothing charged. Its counts are those of
    the answer it reused, what the call takes when the program runs on its own.
    """

    step: str | None
    prompt_sha: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    model: str
    cost: float
    error: str | None = None
    samples: int = 1
    reused: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RunRecord:
    """What one execution of a workflow produced: output y and trace τ."""

    status: str
    output: str | None
    calls: tuple[CallRecord, ...]
    verify_calls: int
    wall_s: float
    exec_status: str
    error_type: str | None = None
    error_message: str | None = None
    traceback_tail: str | None = None
    budget_stop: str | None = None

    @property
    def tokens(self) -> int:
        """Tokens the run was charged: reused calls cost nothing."""
        return sum(c.prompt_tokens + c.completion_tokens for c in self.calls if not c.reused)

    @property
    def llm_calls(self) -> int:
        """Calls as the budget counts them: one per sample, refused and reused calls not at
        all."""
        return sum(c.samples for c in self.calls if not c.reused)

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.calls if not c.reused)

    @property
    def reused(self) -> int:
        """Calls answered from answers the repair already had."""
        return sum(c.reused for c in self.calls)

    def to_cost(self) -> Cost:
        """What the program's calls take, as the verifier's `Cost` (a failed call counts, at 0
        tokens). Reused calls count at their answer's size: a score must not depend on which
        answers this repair happened to have already."""
        return Cost(
            calls=sum(c.samples for c in self.calls),
            prompt_tokens=sum(c.prompt_tokens for c in self.calls),
            completion_tokens=sum(c.completion_tokens for c in self.calls),
            units=sum(c.cost for c in self.calls),
            wall_s=self.wall_s,
        )

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "calls"}
        data["calls"] = [c.to_json() for c in self.calls]
        return data


@dataclass
class RunContext:
    """What the parent needs to answer one run's RPC calls.

    ``checks`` is the repair's check cache: a workflow's own ``verify(code)`` and the final
    feedback on the same code then run the visible checks once. ``answers`` are the greedy
    answers this run may reuse instead of calling the model (None: every call is sent).
    """

    workflow: Workflow
    task: Task
    program: Broker
    sandbox: Sandbox
    meter: Meter
    program_params: dict[str, Any] = field(default_factory=dict)
    on_call: Callable[[CallRecord], None] | None = None
    checks: CheckCache | None = None
    answers: RunAnswers | None = None


# The names the harness gives a workflow are the names an edit may read without defining them.
assert all(f'"{name}": ' in _HARNESS for name in RUNTIME_NAMES), "harness and RUNTIME_NAMES disagree"


def harness(workflow: Workflow, task: Task) -> str:
    """The program the sandbox runs: runtime helpers, `llm`/`verify` over RPC, the workflow."""
    visible_task = {
        "task_id": task.task_id,
        "prompt": task.prompt,
        "entry_point": task.entry_point,
        "visible_tests": list(task.visible_tests),
    }
    from flowmend.engine._siblings import sibling_sources

    return _HARNESS.format(
        helpers=_HELPERS,
        task=repr(visible_task),
        source=repr(workflow.source),
        entry=repr(workflow.entry),
        modules=repr(sibling_sources(workflow)),
    )


def run_workflow(ctx: RunContext, *, timeout_s: float, memory_mb: int = 1024,
                 max_verify_calls: int = 32) -> RunRecord:
    """Run `ctx.workflow` on `ctx.task` once in the sandbox; never raises for the workflow's faults.

    The run's clock counts the time its `verify` calls take (each is a nested sandbox run), and
    past `max_verify_calls` of them `verify` raises `VerifyLimitExceeded` in the workflow.
    """
    calls: list[CallRecord] = []
    verifies = [0]
    result: dict[str, Any] = {}
    budget_stop: list[str] = []
    lock = threading.Lock()
    spans = _step_spans(ctx.workflow)

    def handle(method: str, payload: Any) -> Any:
        if method == "llm":
            return _answer_llm(ctx, payload, spans, calls, budget_stop, lock)
        if method == "verify":
            with lock:
                verifies[0] += 1
                if verifies[0] > max_verify_calls:
                    raise VerifyLimitExceeded(
                        f"this run may make {max_verify_calls} verify(code) calls")
            code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
            fb = feedback(ctx.task, code, None, ctx.sandbox, cache=ctx.checks)
            return fb.to_check().to_json()
        if method == "result":
            result["output"] = payload.get("output") if isinstance(payload, dict) else None
            return {"ok": True}
        raise ValueError(f"unknown runtime call {method!r}")

    started = time.monotonic()
    wall_left = ctx.meter.wall_left()
    timeout = timeout_s if wall_left is None else max(1.0, min(timeout_s, wall_left))
    # Attached, the broker knows one more workflow may be about to call: it sends a batch as
    # soon as every attached workflow has a request pending instead of waiting for stragglers.
    with ctx.program.attach():
        run: ExecResult = ctx.sandbox.run(
            harness(ctx.workflow, ctx.task),
            limits=Limits(timeout_s=timeout, memory_mb=memory_mb),
            rpc=handle,
        )
    output = result.get("output")
    status = "ok" if run.status == "ok" and "output" in result else (
        "budget_exhausted" if budget_stop else ("error" if run.status == "ok" else run.status)
    )
    return RunRecord(
        status=status,
        output=output,
        calls=tuple(calls),
        verify_calls=verifies[0],
        wall_s=time.monotonic() - started,
        exec_status=run.status,
        error_type=run.error_type,
        error_message=run.error_message,
        traceback_tail=run.traceback_tail,
        budget_stop=budget_stop[0] if budget_stop else None,
    )


def _answer_llm(ctx: RunContext, payload: Any, spans, calls, budget_stop, lock) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("prompt"), str):
        raise ValueError("llm() takes a prompt string")
    params = dict(payload.get("params") or {})
    unknown = set(params) - _LLM_PARAMS
    if unknown:
        raise TypeError(f"llm() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    merged = {**ctx.program_params, **params}
    if isinstance(merged.get("stop"), (str, list)):
        stop = merged["stop"]
        merged["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
    model = merged.pop("model", None)
    if model is not None and model != ctx.program.backend.model:
        # A step may name a model the deployment does not serve (swap-model): the local
        # engine answers with its own model instead of failing the whole run.
        model = None
    request = Request(prompt=payload["prompt"], model=model, **merged)
    step = _step_of(payload.get("lines") or (), spans)
    sha = hashlib.sha256(request.prompt.encode()).hexdigest()[:16]
    known = ctx.answers.get(request) if ctx.answers is not None else None
    if known is not None:
        return _reply(ctx, CallRecord(step, sha, known.prompt_tokens, known.completion_tokens,
                                      0.0, known.model, known.cost, samples=len(known.texts),
                                      reused=True),
                      known, calls, lock)
    try:
        with model_wait():  # the run's clock stands still while the model works, not otherwise
            completion = metered_call(ctx.program, ctx.meter, request)
    except BudgetExhausted as err:  # the workflow sees the runtime's BudgetExhausted
        with lock:
            budget_stop.append(err.limit)
            calls.append(CallRecord(step, sha, 0, 0, 0.0, ctx.program.model, 0.0, str(err),
                                    samples=0))
        raise
    except Exception as err:  # the model failed this call: the workflow sees an RPCError
        with lock:
            calls.append(CallRecord(step, sha, 0, 0, 0.0, ctx.program.model, 0.0,
                                    f"{type(err).__name__}: {err}", samples=request.n))
        raise
    if ctx.answers is not None:
        ctx.answers.put(request, completion)
    record = CallRecord(
        step, sha, completion.prompt_tokens, completion.completion_tokens,
        completion.latency_s, completion.model, completion.cost, samples=len(completion.texts),
    )
    return _reply(ctx, record, completion, calls, lock)


def _reply(ctx: RunContext, record: CallRecord, completion: Completion, calls, lock
           ) -> dict[str, Any]:
    with lock:
        calls.append(record)
    if ctx.on_call is not None:
        ctx.on_call(record)
    return {"texts": list(completion.texts)}


def _step_spans(workflow: Workflow) -> list[tuple[int, int, str]]:
    """(first line, last line, step id) of every step's call, innermost spans first."""
    spans = []
    for step in workflow.steps:
        if step.call is not None:
            pos = workflow.position(step.call)
            spans.append((pos.start.line, pos.end.line, step.id))
        else:
            spans.append((step.line, step.line, step.id))
    return sorted(spans, key=lambda s: s[1] - s[0])


def _step_of(lines, spans) -> str | None:
    for line in lines:
        for first, last, step_id in spans:
            if first <= int(line) <= last:
                return step_id
    return None


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, default=str)
