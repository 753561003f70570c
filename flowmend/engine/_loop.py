"""The inner loop: run, verify, let the weak optimizer pick edits, run the candidates, keep the best.

For k in 0..K−1: run π_k on x in the sandbox → (y, τ); the verifier turns them into feedback b
and a score; stop when the visible checks pass. Otherwise the optimizer sees a short localised
summary and a numbered menu of applicable edits and answers with m menu choices; each becomes
a patch, invalid ones are counted and dropped, the candidates run in parallel, and the best by
score (ties: cheaper) becomes π_{k+1}. Every LLM call, program or optimizer, is metered against
one hard budget. Nothing here can read hidden tests: `Task` has no field for them.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowmend.engine._library import OperatorLibrary, default_library
from flowmend.engine._menu import MenuItem, menu
from flowmend.engine._operator import Applied
from flowmend.engine._optimizer import (
    OptimizerConfig,
    choice_prompt,
    parse_choice,
    shown_menu,
    text_prompt,
    with_text,
)
from flowmend.engine._patch import Patch, apply_patch, apply_patches, diff
from flowmend.engine._runtime import (
    Budget,
    BudgetExhausted,
    Meter,
    RunContext,
    RunRecord,
    metered_call,
    run_workflow,
)
from flowmend.engine._workflow import Workflow, WorkflowError, parse_workflow
from flowmend.llm import Broker, Request
from flowmend.sandbox import Sandbox
from flowmend.task import Task
from flowmend.verifier import Feedback, ScoreWeights, feedback

MODES = {"prompt": ("prompt",), "structure": ("prompt", "structure")}
STATUSES = ("solved", "iterations_exhausted", "budget_exhausted", "error")


@dataclass(frozen=True)
class RepairConfig:
    """Everything that shapes one repair besides the task, the seed and the models.

    Attributes:
        iterations: optimizer rounds K; 0 runs the (pre-patched) seed once.
        proposals: menu choices m asked of the optimizer per round.
        mode: "prompt" (prompt edits only) or "structure" (prompt and structure edits).
        budget: hard caps over the whole repair.
        weights: the score's weights.
        entry, step_callees: how to read the workflow.
        pre_patches: applied to the seed before the first run (fixed-workflow baselines).
        program_params: defaults for every program-model call (e.g. max_tokens).
        run_timeout_s: wall-time limit of one workflow run, model waits excluded.
        seed: seeds the menu sampling, so a repair is reproducible.
        optimizer: how the optimizer is prompted.
    """

    iterations: int = 4
    proposals: int = 4
    mode: str = "structure"
    budget: Budget = field(default_factory=Budget)
    weights: ScoreWeights = field(default_factory=ScoreWeights)
    entry: str = "solve"
    step_callees: tuple[str, ...] = ("llm",)
    pre_patches: tuple[Patch, ...] = ()
    program_params: tuple[tuple[str, Any], ...] = (("max_tokens", 384),)
    run_timeout_s: float = 60.0
    seed: int = 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0 <= self.iterations <= 100:
            raise ValueError("iterations must lie in [0, 100]")
        if not 1 <= self.proposals <= 16:
            raise ValueError("proposals must lie in [1, 16]")
        if self.run_timeout_s <= 0:
            raise ValueError("run_timeout_s must be positive")
        object.__setattr__(self, "step_callees", tuple(self.step_callees))
        object.__setattr__(self, "pre_patches", tuple(self.pre_patches))
        params = self.program_params
        if isinstance(params, dict):
            params = tuple(sorted(params.items()))
        object.__setattr__(self, "program_params", tuple(params))


@dataclass(frozen=True)
class Candidate:
    """One executed program: the incumbent (index 0) or a proposal of an iteration."""

    iteration: int
    index: int
    parent: int | None
    patch: dict[str, Any] | None
    label: str | None
    source: str
    output: str
    score: float
    passed_visible: bool
    tokens: int
    calls: int
    status: str
    selected: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Proposals:
    """What the optimizer's proposals came to, summed over the iterations."""

    tried: int = 0
    applied: int = 0
    invalid: int = 0
    not_applicable: int = 0
    rejected: int = 0
    duplicate: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RepairResult:
    """The outcome of one repair; `to_json()` is the command line's `--json` object."""

    status: str
    passed_visible: bool
    iterations: int
    calls: int
    tokens: int
    cost: float
    budget: Budget
    stopped_by: str | None
    final_source: str
    diff: str
    output: str
    feedback: Feedback | None
    trace: str | None
    proposals: Proposals
    candidates: tuple[Candidate, ...]
    wall_s: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "passed_visible": self.passed_visible,
            "iterations": self.iterations,
            "calls": self.calls,
            "tokens": self.tokens,
            "cost": self.cost,
            "budget": self.budget.to_json(),
            "stopped_by": self.stopped_by,
            "final_source": self.final_source,
            "diff": self.diff,
            "output": self.output,
            "feedback": None if self.feedback is None else self.feedback.to_json(),
            "trace": self.trace,
            "proposals": self.proposals.to_json(),
            "candidates": [c.to_json() for c in self.candidates],
            "wall_s": self.wall_s,
            "error": self.error,
        }


class _Trace:
    """The JSONL trace of one repair: every LLM call, proposal, patch and verdict, flushed as it goes."""

    def __init__(self, path: Path | None, on_event: Callable[[dict], None] | None):
        self.path = path
        self._on_event = on_event
        self._lock = threading.Lock()
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "w", encoding="utf-8")
        self._t0 = time.monotonic()

    def __call__(self, event: str, **data: Any) -> None:
        record = {"event": event, "t": round(time.monotonic() - self._t0, 4), **data}
        with self._lock:
            if self._file is not None:
                self._file.write(json.dumps(record, sort_keys=True, default=str) + "\n")
                self._file.flush()
        if self._on_event is not None:
            self._on_event(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


@dataclass
class _Evaluated:
    source: str
    workflow: Workflow
    run: RunRecord
    feedback: Feedback

    @property
    def rank(self) -> tuple[float, int]:
        return (self.feedback.score, -self.run.tokens)


def repair(
    seed_source: str,
    task: Task,
    *,
    program: Broker,
    optimizer: Broker,
    sandbox: Sandbox,
    config: RepairConfig = RepairConfig(),
    trace_path: str | Path | None = None,
    on_event: Callable[[dict], None] | None = None,
    library: OperatorLibrary | None = None,
) -> RepairResult:
    """Repair `seed_source` on `task` under `config.budget`; never raises for a workflow's faults.

    Errors in the seed itself (not Python, no entry function, a pre-patch that does not apply)
    come back as a result with status "error". Whatever happens, the trace holds every call,
    proposal and verdict up to that point. `library` holds the operators the optimizer may
    use (default: the built-ins); the trace's start event names its digest.
    """
    started = time.monotonic()
    trace = _Trace(Path(trace_path) if trace_path is not None else None, on_event)
    meter = Meter(config.budget)
    try:
        return _Repair(seed_source, task, program, optimizer, sandbox, config, trace, meter,
                       started, default_library() if library is None else library).run()
    finally:
        trace.close()


class _Repair:
    def __init__(self, seed_source, task, program, optimizer, sandbox, config, trace, meter, started,
                 library):
        self.library = library
        self.seed_source = seed_source
        self.task = task
        self.program = program
        self.optimizer = optimizer
        self.sandbox = sandbox
        self.config = config
        self.trace = trace
        self.meter = meter
        self.started = started
        self.candidates: list[Candidate] = []
        self.counts = Proposals()
        self.rng = random.Random(f"{config.seed}:{task.task_id}")
        self.optimizer_errors = 0

    def run(self) -> RepairResult:
        c = self.config
        self.trace("start", task=self.task.task_id, mode=c.mode, iterations=c.iterations,
                   proposals=c.proposals, budget=c.budget.to_json(), library=self.library.digest)
        try:
            wf = parse_workflow(self.seed_source, entry=c.entry, step_callees=c.step_callees)
        except WorkflowError as err:
            return self._error(str(err))
        if c.pre_patches:
            result = apply_patches(wf, list(c.pre_patches), library=self.library)
            if not isinstance(result, Applied):
                return self._error(f"pre-patch does not apply: {result.detail}")
            wf = result.workflow
        current = self._evaluate([(wf, None, None)], iteration=0, parent=None)[0]
        self._record(current, iteration=0, index=0, parent=None, patch=None, label=None,
                     selected=True)
        iterations = 0
        stopped_by = None
        for k in range(1, c.iterations + 1):
            if current.feedback.ok:
                break
            stopped_by = self.meter.exhausted()
            if stopped_by:
                break
            proposals = self._propose(current, k)
            if not proposals:
                iterations = k
                self.trace("iteration", iteration=k, candidates=0)
                stopped_by = self.meter.stopped_by
                if stopped_by:
                    break
                continue
            evaluated = self._evaluate(
                [(w, patch, label) for w, patch, label in proposals], iteration=k, parent=0
            )
            best = max(evaluated, key=lambda e: e.rank)
            better = best.rank > current.rank
            for i, (e, (_, patch, label)) in enumerate(zip(evaluated, proposals), start=1):
                self._record(e, iteration=k, index=i, parent=0, patch=patch, label=label,
                             selected=better and e is best)
            self.trace("iteration", iteration=k, candidates=len(evaluated),
                       best_score=best.feedback.score, incumbent_score=current.feedback.score,
                       replaced=better)
            if better:
                current = best
            iterations = k
        if current.feedback.ok:
            status, stopped_by = "solved", "visible_checks"
        else:
            stopped_by = stopped_by or self.meter.stopped_by
            if stopped_by:
                status = "budget_exhausted"
            else:
                status, stopped_by = "iterations_exhausted", "iterations"
        return self._result(status, stopped_by, iterations, current)

    # -- proposals ------------------------------------------------------------------------

    def _propose(self, current: _Evaluated, k: int) -> list[tuple[Workflow, dict, str]]:
        c = self.config
        items = menu(current.workflow, library=self.library, kinds=MODES[c.mode])
        if not items:
            self.trace("menu", iteration=k, size=0)
            return []
        shown = shown_menu(items, c.optimizer.menu_size, self.rng)
        summary = current.feedback.summary(max_chars=c.optimizer.summary_chars)
        prompt = choice_prompt(self.task, current.workflow, summary, shown, c.optimizer)
        choices = tuple(str(i) for i in range(1, len(shown) + 1))
        self.trace("menu", iteration=k, size=len(items), shown=[i.label for i in shown])
        request = Request(prompt=prompt, max_tokens=4, temperature=c.optimizer.temperature,
                          n=c.proposals, choice=choices)
        try:
            completion = self._optimizer_call(request, purpose="choice", iteration=k)
        except BudgetExhausted:
            return []
        picked: list[MenuItem] = []
        for answer in completion.texts:
            self.counts = _bump(self.counts, tried=1)
            index = parse_choice(answer, len(shown))
            if index is None:
                self.counts = _bump(self.counts, rejected=1)
                self.trace("proposal", iteration=k, answer=answer, verdict="outside the menu")
                continue
            picked.append(shown[index])
        seen = {current.source}
        out: list[tuple[Workflow, dict, str]] = []
        for item in picked:
            patch = item.patch
            if item.text_arg is not None:
                try:
                    text = self._optimizer_call(
                        Request(prompt=text_prompt(self.task, current.workflow, item, summary,
                                                   c.optimizer),
                                max_tokens=c.optimizer.text_max_tokens,
                                temperature=c.optimizer.temperature),
                        purpose="text", iteration=k,
                    ).text
                except BudgetExhausted:
                    break
                patch = with_text(item, text)
            result = apply_patch(current.workflow, patch, library=self.library)
            verdict = type(result).__name__
            if isinstance(result, Applied) and result.source in seen:
                self.counts = _bump(self.counts, duplicate=1)
                verdict = "duplicate"
            elif isinstance(result, Applied):
                seen.add(result.source)
                self.counts = _bump(self.counts, applied=1)
                out.append((result.workflow, patch.to_json(), item.label))
            elif verdict == "Invalid":
                self.counts = _bump(self.counts, invalid=1)
            else:
                self.counts = _bump(self.counts, not_applicable=1)
            self.trace("proposal", iteration=k, label=item.label, patch=patch.to_json(),
                       verdict=verdict.lower(), detail=getattr(result, "detail", None))
        return out

    def _optimizer_call(self, request: Request, *, purpose: str, iteration: int):
        """One metered optimizer call; BudgetExhausted when the budget or the model fails it.

        A model that cannot answer (a server that refuses, a replay miss) ends the proposals
        of this iteration like a spent budget does: logged, never raised out of the repair.
        """
        try:
            completion = metered_call(self.optimizer, self.meter, request)
        except BudgetExhausted as err:
            self.trace("llm", role="optimizer", purpose=purpose, iteration=iteration,
                       error=str(err))
            raise
        except Exception as err:  # noqa: BLE001 - a model fault is data in the trace
            self.optimizer_errors += 1
            self.trace("llm", role="optimizer", purpose=purpose, iteration=iteration,
                       error=f"{type(err).__name__}: {err}")
            raise BudgetExhausted("optimizer") from None
        self.trace("llm", role="optimizer", purpose=purpose, iteration=iteration,
                   prompt_tokens=completion.prompt_tokens,
                   completion_tokens=completion.completion_tokens,
                   latency_s=completion.latency_s, model=completion.model,
                   answers=list(completion.texts))
        return completion

    # -- running and scoring --------------------------------------------------------------

    def _evaluate(self, programs: Sequence[tuple[Workflow, Any, Any]], *, iteration: int,
                  parent: int | None) -> list[_Evaluated]:
        def one(wf: Workflow) -> _Evaluated:
            ctx = RunContext(
                workflow=wf, task=self.task, program=self.program, sandbox=self.sandbox,
                meter=self.meter, weights=self.config.weights,
                program_params=dict(self.config.program_params),
                on_call=lambda call: self.trace("llm", role="program", iteration=iteration,
                                                **call),
            )
            run = run_workflow(ctx, timeout_s=self.config.run_timeout_s)
            fb = feedback(self.task, run.output or "", run.cost_summary(), self.sandbox,
                          self.config.weights)
            return _Evaluated(wf.source, wf, run, fb)

        if len(programs) == 1:
            return [one(programs[0][0])]
        with ThreadPoolExecutor(max_workers=len(programs)) as pool:
            return list(pool.map(one, [p[0] for p in programs]))

    def _record(self, e: _Evaluated, *, iteration: int, index: int, parent: int | None,
                patch: dict | None, label: str | None, selected: bool) -> None:
        candidate = Candidate(
            iteration=iteration, index=index, parent=parent, patch=patch, label=label,
            source=e.source, output=e.feedback.code, score=e.feedback.score,
            passed_visible=e.feedback.ok, tokens=e.run.tokens, calls=len(e.run.calls),
            status=e.run.status, selected=selected,
        )
        self.candidates.append(candidate)
        self.trace("verdict", iteration=iteration, index=index, label=label,
                   run_status=e.run.status, error_type=e.run.error_type,
                   score=e.feedback.score, kind=e.feedback.kind,
                   passed=e.feedback.passed, total=e.feedback.total,
                   summary=e.feedback.summary(300), tokens=e.run.tokens, selected=selected)

    # -- results --------------------------------------------------------------------------

    def _result(self, status: str, stopped_by: str | None, iterations: int,
                current: _Evaluated | None, error: str | None = None) -> RepairResult:
        final = current.source if current is not None else self.seed_source
        result = RepairResult(
            status=status,
            passed_visible=bool(current is not None and current.feedback.ok),
            iterations=iterations,
            calls=self.meter.calls,
            tokens=self.meter.tokens,
            cost=self.meter.cost,
            budget=self.config.budget,
            stopped_by=stopped_by,
            final_source=final,
            diff=diff(self.seed_source, final, "workflow.py"),
            output=current.feedback.code if current is not None else "",
            feedback=current.feedback if current is not None else None,
            trace=str(self.trace.path) if self.trace.path is not None else None,
            proposals=self.counts,
            candidates=tuple(self.candidates),
            wall_s=time.monotonic() - self.started,
            error=error,
        )
        self.trace("stop", status=status, stopped_by=stopped_by, iterations=iterations,
                   calls=result.calls, tokens=result.tokens, passed_visible=result.passed_visible)
        return result

    def _error(self, message: str) -> RepairResult:
        self.trace("error", message=message)
        return self._result("error", "error", 0, None, error=message)


def _bump(counts: Proposals, **delta: int) -> Proposals:
    from dataclasses import replace

    return replace(counts, **{k: getattr(counts, k) + v for k, v in delta.items()})
