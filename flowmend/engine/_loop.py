"""The inner loop: run, verify, let the weak optimizer pick edits, run the candidates, keep the best.

For k in 0..K−1: run π_k on x in the sandbox → (y, τ); the verifier turns them into feedback b
and a score; stop when the visible checks pass. Otherwise the optimizer sees a short localised
summary and a numbered menu of applicable edits and answers with m menu choices; each becomes
a patch, invalid ones are counted and dropped, the candidates run in parallel, and the best by
score (ties: cheaper) becomes π_{k+1}. Every LLM call, program or optimizer, is metered against
one hard budget. Nothing here can read hidden tests: `Task` has no field for them.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from flowmend.engine._library import OperatorLibrary, default_library, load_library
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
from flowmend.engine._convention import Convention
from flowmend.engine._patch import Patch, apply_patch, apply_patches, diff
from flowmend.engine._reuse import AnswerCache
from flowmend.engine._runtime import (
    Budget,
    BudgetExhausted,
    CallRecord,
    Meter,
    RunContext,
    RunRecord,
    metered_call,
    run_workflow,
)
from flowmend.engine._trace import (
    ErrorEvent,
    IterationEvent,
    LlmEvent,
    MenuEvent,
    ProposalEvent,
    StartEvent,
    StopEvent,
    Trace,
    TraceEvent,
    VerdictEvent,
)
from flowmend.engine._workflow import Workflow, WorkflowError, parse_workflow
from flowmend.errors import UserError
from flowmend.llm import Broker, Request
from flowmend.sandbox import Sandbox
from flowmend.task import Task
from flowmend.verifier import CheckCache, Feedback, ScoreWeights, feedback, score

# Which kinds of menu edit each loop mode offers.
MODES = {"prompt": ("prompt",), "structure": ("prompt", "structure")}
# Who picks the menu choices: the optimizer model, or a uniform draw (the ablation that shows
# whether the model's choices beat chance).
CHOOSERS = ("model", "random")
CONFIG_SCHEMA = "flowmend.repair-config/1"
# How a repair ends (`RepairResult.status`).
REPAIR_STATUSES = ("solved", "iterations_exhausted", "budget_exhausted", "error")


@dataclass(frozen=True)
class RepairConfig:
    """Everything that shapes one repair besides the task, the seed workflow and the models.

    One frozen record of a whole set-up: `to_json` / `from_json` round-trip it and `digest`
    names it, so a bench record or a meta-loop trial can say exactly what it ran.

    Attributes:
        iterations: optimizer rounds K; 0 runs the (pre-patched) seed once.
        proposals: menu choices m asked of the optimizer per round.
        mode: "prompt" (prompt edits only) or "structure" (prompt and structure edits).
        budget: hard caps over the whole repair.
        weights: the score's weights.
        entry, step_callees: how to read the workflow.
        conventions: the step conventions to read it with instead of `step_callees` (a
            project config's); () reads it with flowmend's own, with `step_callees`.
        pre_patches: applied to the seed before the first run (fixed-workflow baselines).
        program_params: defaults for every program-model call (e.g. max_tokens).
        run_timeout_s: wall-time limit of one workflow run, model waits excluded.
        max_verify_calls: `verify(code)` calls one workflow run may make; the next one raises
            `VerifyLimitExceeded` inside the workflow (a `verify` loop cannot run for ever).
        rng_seed: seeds the menu sampling, so a repair is reproducible.
        optimizer: how the optimizer is prompted.
        library: the operators the optimizer may use; None means the built-ins. Its JSON form
            is its digest and the specs it was loaded from, so a stored config names exactly
            the operators it ran with and refuses to load against other ones.
        chooser: "model" asks the optimizer for the menu choices; "random" draws them
            uniformly from the same shown menu (its own rng, seeded from `rng_seed`) and makes
            no optimizer call: items whose argument is free text need the model, so it
            draws among the others.
        reuse_greedy: a greedy program call whose request is exactly one this repair already
            had answered gets that answer, unsent and uncharged (docs/loop.md).
    """

    iterations: int = 4
    proposals: int = 4
    mode: str = "structure"
    budget: Budget = field(default_factory=Budget)
    weights: ScoreWeights = field(default_factory=ScoreWeights)
    entry: str = "solve"
    step_callees: tuple[str, ...] = ("llm",)
    conventions: tuple[Convention, ...] = ()
    pre_patches: tuple[Patch, ...] = ()
    program_params: tuple[tuple[str, Any], ...] = (("max_tokens", 384),)
    run_timeout_s: float = 60.0
    max_verify_calls: int = 32
    rng_seed: int = 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    library: OperatorLibrary | None = None
    chooser: str = "model"
    reuse_greedy: bool = True

    def __post_init__(self) -> None:
        if self.chooser not in CHOOSERS:
            raise ValueError(f"chooser must be one of {', '.join(CHOOSERS)}, got {self.chooser!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name, low, high in (("iterations", 0, 100), ("proposals", 1, 16)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        if isinstance(self.max_verify_calls, bool) or not isinstance(self.max_verify_calls, int) \
                or not 0 <= self.max_verify_calls <= 10_000:
            raise ValueError("max_verify_calls must be an integer in [0, 10000], "
                             f"got {self.max_verify_calls!r}")
        if isinstance(self.rng_seed, bool) or not isinstance(self.rng_seed, int):
            raise ValueError(f"rng_seed must be an integer, got {self.rng_seed!r}")
        if not isinstance(self.reuse_greedy, bool):
            raise ValueError(f"reuse_greedy must be true or false, got {self.reuse_greedy!r}")
        if isinstance(self.run_timeout_s, bool) or not isinstance(self.run_timeout_s, (int, float)) \
                or self.run_timeout_s <= 0:
            raise ValueError(f"run_timeout_s must be a positive number, got {self.run_timeout_s!r}")
        if not isinstance(self.entry, str) or not self.entry:
            raise ValueError(f"entry must be a non-empty string, got {self.entry!r}")
        callees = (self.step_callees,) if isinstance(self.step_callees, str) else self.step_callees
        if not all(isinstance(c, str) and c for c in callees):
            raise ValueError(f"step_callees must be non-empty strings, got {self.step_callees!r}")
        object.__setattr__(self, "step_callees", tuple(callees))
        object.__setattr__(self, "conventions", tuple(self.conventions))
        if not all(isinstance(c, Convention) for c in self.conventions):
            raise ValueError("conventions must be Convention values")
        patches = tuple(self.pre_patches)
        if not all(isinstance(p, Patch) for p in patches):
            raise ValueError("pre_patches must be Patch values")
        object.__setattr__(self, "pre_patches", patches)
        params = self.program_params
        if isinstance(params, Mapping):
            params = tuple(sorted(params.items()))
        object.__setattr__(self, "program_params", tuple(tuple(p) for p in params))
        if self.library is not None and not isinstance(self.library, OperatorLibrary):
            raise ValueError("library must be an OperatorLibrary (or None for the built-ins)")
        for name, kind in (("budget", Budget), ("weights", ScoreWeights),
                           ("optimizer", OptimizerConfig)):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"{name} must be a {kind.__name__}")

    def to_json(self) -> dict[str, Any]:
        # The default chooser is left out, so every config written before it existed keeps
        # its digest.
        chooser = {} if self.chooser == "model" else {"chooser": self.chooser}
        return {
            **chooser,
            "schema": CONFIG_SCHEMA,
            "iterations": self.iterations,
            "proposals": self.proposals,
            "mode": self.mode,
            "budget": self.budget.to_json(),
            "weights": self.weights.to_dict(),
            "entry": self.entry,
            "step_callees": list(self.step_callees),
            # Only when set, so that every set-up made before conventions keeps its digest.
            **({"conventions": [c.to_json() for c in self.conventions]}
               if self.conventions else {}),
            "pre_patches": [p.to_json() for p in self.pre_patches],
            "program_params": dict(self.program_params),
            "run_timeout_s": self.run_timeout_s,
            "max_verify_calls": self.max_verify_calls,
            "rng_seed": self.rng_seed,
            "optimizer": self.optimizer.to_json(),
            "library": {"digest": self.operators.digest, "specs": list(self.operators.specs)},
            "reuse_greedy": self.reuse_greedy,
        }

    @property
    def operators(self) -> OperatorLibrary:
        """The library this set-up repairs with: its own, or the built-ins."""
        return default_library() if self.library is None else self.library

    @classmethod
    def from_json(cls, data: Any) -> "RepairConfig":
        """The config a `to_json()` object describes; missing fields keep their defaults.

        Raises:
            ValueError: one line naming the bad field (``repair config field 'budget': ...``).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a repair config must be an object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names) - {"schema"})
        if unknown:
            raise ValueError(f"unknown repair config field {unknown[0]!r}; known: {', '.join(names)}")
        if data.get("schema", CONFIG_SCHEMA) != CONFIG_SCHEMA:
            raise ValueError(f"repair config field 'schema' must be {CONFIG_SCHEMA!r}, "
                             f"got {data.get('schema')!r}")
        readers = {
            "budget": Budget.from_json,
            "weights": ScoreWeights.from_dict,
            "optimizer": OptimizerConfig.from_json,
            "pre_patches": lambda v: tuple(Patch.from_json(p, where=f"pre_patches[{i}]")
                                           for i, p in enumerate(_json_list(v))),
            "step_callees": lambda v: tuple(_json_list(v)),
            "conventions": lambda v: tuple(Convention.from_json(c) for c in _json_list(v)),
            "program_params": _json_object,
            "library": _library_from_json,
        }
        values: dict[str, Any] = {}
        for name in names:
            if name not in data:
                continue
            try:
                values[name] = readers.get(name, lambda v: v)(data[name])
            except (ValueError, TypeError, UserError) as err:
                raise ValueError(f"repair config field {name!r}: {_one_line(err)}") from None
        try:
            return cls(**values)
        except ValueError as err:
            raise ValueError(f"repair config: {_one_line(err)}") from None

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON: two configs that repair alike have one digest."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _library_from_json(value: Any) -> OperatorLibrary | None:
    """The library a config names, loaded again from its specs; its digest must match, so a
    config never runs against operators other than the ones it was made with."""
    data = _json_object(value)
    specs = _json_list(data.get("specs", ["builtin"]))
    loaded = load_library([s for s in specs if not str(s).startswith("-")] or ["builtin"])
    removed = [str(s)[1:] for s in specs if str(s).startswith("-")]
    library = loaded.without(*removed) if removed else loaded
    if "digest" in data and data["digest"] != library.digest:
        raise ValueError(f"library digest {str(data['digest'])[:12]} does not match the "
                         f"operators loaded from {', '.join(map(str, specs))} "
                         f"({library.digest[:12]}): they changed since this config was written")
    return None if library.digest == default_library().digest else library


def _json_list(value: Any) -> list:
    if not isinstance(value, list):
        raise ValueError(f"must be a list, got {type(value).__name__}")
    return value


def _json_object(value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise ValueError(f"must be an object, got {type(value).__name__}")
    return dict(value)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


# A candidate's place in a repair: (iteration, index); index 0 is the seed of iteration 0.
CandidateKey = tuple[int, int]


@dataclass(frozen=True)
class Candidate:
    """One executed program: the (pre-patched) seed, or a proposal of an iteration.

    Attributes:
        iteration, index: where it ran; (0, 0) is the seed, proposals count from 1.
        parent: the (iteration, index) of the incumbent it was made from; None for the seed.
        patch: the edit that made it from its parent; None for the seed.
        label: the menu label of that edit.
        source: its workflow source.
        feedback: the verifier's feedback on its output.
        score: `score(feedback, config.weights)`, what the loop ranked it by.
        run_status: how its run ended ("ok", "error", "timeout", "budget_exhausted", ...).
        tokens, calls: what its run spent (calls as the budget counts them).
        reused: calls of its run answered from answers the repair already had (not in
            `tokens`, not in `calls`).
        selected: whether it became the incumbent.
        budget_stop: the cap that refused one of its calls ("tokens", "calls", ...), if one
            did; it was scored on whatever output it returned all the same.
    """

    iteration: int
    index: int
    parent: CandidateKey | None
    patch: Patch | None
    label: str | None
    source: str
    feedback: Feedback
    score: float
    run_status: str
    tokens: int
    calls: int
    selected: bool = False
    budget_stop: str | None = None
    reused: int = 0

    @property
    def key(self) -> CandidateKey:
        return (self.iteration, self.index)

    @property
    def output(self) -> str:
        """The code the verifier checked."""
        return self.feedback.code

    @property
    def passed_visible(self) -> bool:
        return self.feedback.ok

    def to_json(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "index": self.index,
            "parent": None if self.parent is None else list(self.parent),
            "patch": None if self.patch is None else self.patch.to_json(),
            "label": self.label,
            "source": self.source,
            "output": self.output,
            "score": self.score,
            "passed_visible": self.passed_visible,
            "tokens": self.tokens,
            "calls": self.calls,
            "reused": self.reused,
            "status": self.run_status,
            "selected": self.selected,
            "budget_stop": self.budget_stop,
            "feedback": self.feedback.to_json(),
        }


@dataclass(frozen=True)
class Proposals:
    """What the optimizer's proposals came to, summed over the iterations.

    Attributes:
        tried: menu answers the optimizer gave.
        applied: proposals that became a candidate and ran.
        invalid, not_applicable, rejected, duplicate: proposals dropped before running.
        budget_cut: proposals the budget cut: a candidate the budget refused a call (it is
            still scored on what it returned), or an edit whose text call was refused (it never
            ran).
        no_code: candidates that ran to the end without being cut and returned no code.
    """

    tried: int = 0
    applied: int = 0
    invalid: int = 0
    not_applicable: int = 0
    rejected: int = 0
    duplicate: int = 0
    budget_cut: int = 0
    no_code: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RepairResult:
    """The outcome of one repair; `to_json()` is the command line's `--json` object.

    ``candidates`` is the whole lineage: every executed candidate with its parent's
    (iteration, index), so nobody re-derives a parent by re-applying patches.
    ``reused_calls`` program calls were answered from greedy answers the repair already had,
    saving ``reused_tokens`` (not in ``calls`` or ``tokens``, which were spent).
    """

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
    config_digest: str | None = None
    checks_cached: int = 0
    reused_calls: int = 0
    reused_tokens: int = 0

    def __post_init__(self) -> None:
        if self.status not in REPAIR_STATUSES:
            raise ValueError(f"status must be one of {', '.join(REPAIR_STATUSES)}, got {self.status!r}")

    def candidate(self, key: CandidateKey) -> Candidate | None:
        """The candidate at (iteration, index), e.g. a candidate's parent."""
        return next((c for c in self.candidates if c.key == tuple(key)), None)

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
            "config_digest": self.config_digest,
            "checks_cached": self.checks_cached,
            "reused_calls": self.reused_calls,
            "reused_tokens": self.reused_tokens,
        }


@dataclass(frozen=True)
class _Evaluated:
    key: CandidateKey
    source: str
    workflow: Workflow
    run: RunRecord
    feedback: Feedback
    score: float

    @property
    def rank(self) -> tuple[float, int]:
        # The program's own tokens, reused calls included: reuse must not change the choice.
        return (self.score, -self.feedback.cost.tokens)


def repair(
    seed_source: str,
    task: Task,
    *,
    program: Broker,
    optimizer: Broker,
    sandbox: Sandbox,
    config: RepairConfig = RepairConfig(),
    trace_path: str | Path | None = None,
    on_event: Callable[[TraceEvent], None] | None = None,
    meter: Meter | None = None,
    rank_by: Callable[[str], float] | None = None,
) -> RepairResult:
    """Repair `seed_source` on `task` under `config.budget`; never raises for a workflow's faults.

    Errors in the seed itself (not Python, no entry function, a pre-patch that does not apply)
    come back as a result with status "error". Whatever happens, the trace holds every call,
    proposal and verdict up to that point; `on_event` gets each event as it happens. The
    optimizer chooses among `config.operators`; the trace's start event names their digest.

    ``meter`` spends a budget shared with other repairs (a baseline made of several runs);
    by default the repair has its own, of `config.budget`. ``rank_by`` ranks candidates by a
    number of their output instead of their score (ties: cheaper), for an ablation that
    selects by something the loop cannot see; every candidate still records its score.
    """
    started = time.monotonic()
    trace = Trace(Path(trace_path) if trace_path is not None else None, on_event)
    meter = meter if meter is not None else Meter(config.budget)
    try:
        return _Repair(seed_source, task, program, optimizer, sandbox, config, trace, meter,
                       started, config.operators, rank_by).run()
    finally:
        trace.close()


class _Repair:
    def __init__(self, seed_source, task, program, optimizer, sandbox, config, trace, meter, started,
                 library, rank_by=None):
        self.library = library
        self.rank_by = rank_by
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
        self.rng = random.Random(f"{config.rng_seed}:{task.task_id}")
        # Apart from `rng`, so the random chooser is shown the menus the model would be shown.
        self.choice_rng = random.Random(f"{config.rng_seed}:{task.task_id}:choices")
        self.optimizer_errors = 0
        # Owned by this repair: a workflow's own verify(code) and the feedback on the same
        # output run the visible checks once.
        self.checks = CheckCache()
        self.answers = AnswerCache() if config.reuse_greedy else None
        self.reused_tokens = 0  # what the reused calls would have cost, had they been sent

    def run(self) -> RepairResult:
        c = self.config
        self.trace(StartEvent(task=self.task.task_id, mode=c.mode, iterations=c.iterations,
                              proposals=c.proposals, budget=c.budget.to_json(),
                              config_digest=c.digest, library=self.library.digest))
        try:
            wf = parse_workflow(self.seed_source, entry=c.entry, step_callees=c.step_callees,
                                conventions=c.conventions or None)
        except WorkflowError as err:
            return self._error(str(err))
        if c.pre_patches:
            result = apply_patches(wf, list(c.pre_patches), library=self.library)
            if not isinstance(result, Applied):
                return self._error(f"pre-patch does not apply: {result.detail}")
            wf = result.workflow
        current = self._evaluate([wf], iteration=0)[0]
        self._record(current, parent=None, patch=None, label=None, selected=True)
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
                self.trace(IterationEvent(iteration=k, candidates=0))
                stopped_by = self.meter.stopped_by
                if stopped_by:
                    break
                continue
            evaluated = self._evaluate([w for w, _, _ in proposals], iteration=k)
            best = max(evaluated, key=self._rank)
            better = self._rank(best) > self._rank(current)
            for e, (_, patch, label) in zip(evaluated, proposals):
                self._record(e, parent=current.key, patch=patch, label=label,
                             selected=better and e is best)
                if e.run.budget_stop is not None:
                    self.counts = _bump(self.counts, budget_cut=1)
                elif e.feedback.kind == "no_code":
                    self.counts = _bump(self.counts, no_code=1)
            self.trace(IterationEvent(iteration=k, candidates=len(evaluated),
                                      best_score=best.score, incumbent_score=current.score,
                                      replaced=better))
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

    def _propose(self, current: _Evaluated, k: int) -> list[tuple[Workflow, Patch, str]]:
        c = self.config
        items = menu(current.workflow, library=self.library, kinds=MODES[c.mode])
        if not items:
            self.trace(MenuEvent(iteration=k, size=0))
            return []
        shown = shown_menu(items, c.optimizer.menu_size, self.rng)
        summary = current.feedback.summary(max_chars=c.optimizer.summary_chars)
        prompt = choice_prompt(self.task, current.workflow, summary, shown, c.optimizer)
        choices = tuple(str(i) for i in range(1, len(shown) + 1))
        self.trace(MenuEvent(iteration=k, size=len(items), shown=tuple(i.label for i in shown)))
        if c.chooser == "random":
            answers = self._random_choices(shown)
        else:
            request = Request(prompt=prompt, max_tokens=4, temperature=c.optimizer.temperature,
                              n=c.proposals, choice=choices)
            try:
                answers = self._optimizer_call(request, purpose="choice", iteration=k).texts
            except BudgetExhausted:
                return []
        picked: list[MenuItem] = []
        for answer in answers:
            self.counts = _bump(self.counts, tried=1)
            index = parse_choice(answer, len(shown))
            if index is None:
                self.counts = _bump(self.counts, rejected=1)
                self.trace(ProposalEvent(iteration=k, answer=answer, verdict="outside the menu"))
                continue
            picked.append(shown[index])
        seen = {current.source}
        out: list[tuple[Workflow, Patch, str]] = []
        for built, item in enumerate(picked):
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
                except BudgetExhausted as err:
                    if err.limit != "optimizer":  # the budget, not a model fault, cut the rest
                        self.counts = _bump(self.counts, budget_cut=len(picked) - built)
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
                out.append((result.workflow, patch, item.label))
            elif verdict == "Invalid":
                self.counts = _bump(self.counts, invalid=1)
            else:
                self.counts = _bump(self.counts, not_applicable=1)
            self.trace(ProposalEvent(iteration=k, label=item.label, patch=patch.to_json(),
                                     verdict=verdict.lower(),
                                     detail=getattr(result, "detail", None)))
        return out

    def _random_choices(self, shown: Sequence[MenuItem]) -> list[str]:
        """`proposals` menu numbers drawn uniformly, with replacement, among the shown items
        that need no free text (only a model can write it)."""
        numbers = [str(i) for i, item in enumerate(shown, start=1) if item.text_arg is None]
        if not numbers:
            return []
        return [self.choice_rng.choice(numbers) for _ in range(self.config.proposals)]

    def _rank(self, e: _Evaluated) -> tuple[float, int]:
        if self.rank_by is None:
            return e.rank
        return (self.rank_by(e.feedback.code), -e.run.tokens)

    def _optimizer_call(self, request: Request, *, purpose: str, iteration: int):
        """One metered optimizer call; BudgetExhausted when the budget or the model fails it.

        A model that cannot answer (a server that refuses, a replay miss) ends the proposals
        of this iteration like a spent budget does: logged, never raised out of the repair.
        """
        try:
            completion = metered_call(self.optimizer, self.meter, request)
        except BudgetExhausted as err:
            self.trace(LlmEvent(role="optimizer", purpose=purpose, iteration=iteration,
                                error=str(err), budget_stop=err.limit))
            raise
        except Exception as err:  # noqa: BLE001 - a model fault is data in the trace
            self.optimizer_errors += 1
            self.trace(LlmEvent(role="optimizer", purpose=purpose, iteration=iteration,
                                error=f"{type(err).__name__}: {err}"))
            raise BudgetExhausted("optimizer") from None
        self.trace(LlmEvent(role="optimizer", purpose=purpose, iteration=iteration,
                            prompt_tokens=completion.prompt_tokens,
                            completion_tokens=completion.completion_tokens,
                            latency_s=completion.latency_s, model=completion.model,
                            answers=tuple(completion.texts)))
        return completion

    # -- running and scoring --------------------------------------------------------------

    def _evaluate(self, programs: Sequence[Workflow], *, iteration: int) -> list[_Evaluated]:
        """Run and check each program in parallel; proposals are numbered from 1, the seed is 0."""
        first = 0 if iteration == 0 else 1

        def on_call(call: CallRecord) -> None:
            # A reused call was not sent and cost nothing: the trace books it at 0.
            spent = 0 if call.reused else None
            self.trace(LlmEvent(role="program", iteration=iteration, step=call.step,
                                prompt_sha=call.prompt_sha,
                                prompt_tokens=call.prompt_tokens if spent is None else spent,
                                completion_tokens=call.completion_tokens if spent is None else spent,
                                latency_s=call.latency_s, model=call.model,
                                cost=call.cost if spent is None else 0.0,
                                error=call.error, reused=call.reused or None))

        indexed = list(enumerate(programs, start=first))
        # Each run reads the answers of earlier iterations and its own, never a sibling's: which
        # calls are reused must not depend on which parallel candidate asked first.
        views = [self.answers.view() if self.answers is not None else None for _ in indexed]

        def one(index: int, wf: Workflow) -> _Evaluated:
            ctx = RunContext(
                workflow=wf, task=self.task, program=self.program, sandbox=self.sandbox,
                meter=self.meter, program_params=dict(self.config.program_params),
                on_call=on_call, checks=self.checks, answers=views[index - first],
            )
            run = run_workflow(ctx, timeout_s=self.config.run_timeout_s,
                               max_verify_calls=self.config.max_verify_calls)
            fb = feedback(self.task, run.output or "", run.to_cost(), self.sandbox,
                          cache=self.checks)
            return _Evaluated((iteration, index), wf.source, wf, run, fb,
                              score(fb, self.config.weights))

        if len(indexed) == 1:
            evaluated = [one(*indexed[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(indexed)) as pool:
                evaluated = list(pool.map(lambda pair: one(*pair), indexed))
        if self.answers is not None:
            self.answers.merge(views)
        return evaluated

    def _record(self, e: _Evaluated, *, parent: CandidateKey | None, patch: Patch | None,
                label: str | None, selected: bool) -> None:
        iteration, index = e.key
        self.reused_tokens += sum(c.prompt_tokens + c.completion_tokens
                                  for c in e.run.calls if c.reused)
        self.candidates.append(Candidate(
            iteration=iteration, index=index, parent=parent, patch=patch, label=label,
            source=e.source, feedback=e.feedback, score=e.score, run_status=e.run.status,
            tokens=e.run.tokens, calls=e.run.llm_calls, selected=selected,
            budget_stop=e.run.budget_stop, reused=e.run.reused,
        ))
        self.trace(VerdictEvent(
            iteration=iteration, index=index, label=label, run_status=e.run.status,
            error_type=e.run.error_type, score=e.score, kind=e.feedback.kind,
            passed=e.feedback.passed, total=e.feedback.total, summary=e.feedback.summary(300),
            tokens=e.run.tokens, selected=selected, budget_stop=e.run.budget_stop,
        ))

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
            config_digest=self.config.digest,
            checks_cached=self.checks.hits,
            reused_calls=sum(c.reused for c in self.candidates),
            reused_tokens=self.reused_tokens,
        )
        self.trace(StopEvent(status=status, stopped_by=stopped_by, iterations=iterations,
                             calls=result.calls, tokens=result.tokens,
                             passed_visible=result.passed_visible))
        return result

    def _error(self, message: str) -> RepairResult:
        self.trace(ErrorEvent(message=message))
        return self._result("error", "error", 0, None, error=message)


def _bump(counts: Proposals, **delta: int) -> Proposals:
    return replace(counts, **{k: getattr(counts, k) + v for k, v in delta.items()})
