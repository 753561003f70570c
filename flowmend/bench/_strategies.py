"""How a method spends a task's budget: the inner loop, or a baseline made of several runs.

`repair` is the inner loop as it is (b0, b1, b2, flowmend, flowmend-random). The others are
built from repairs of 0 iterations that share one `Meter`, so the whole method spends one
per-task budget and can never pass it:

- `best-of-n` (b3): the seed's greedy answer, then samples of the seed at temperature 0.8 (every
  step's), as many as the budget allows, in waves of `WAVE` at once; the best by the verifier's
  score S_F wins, ties to the cheaper (then to the earlier, so the greedy answer first). A
  sample the budget refused before it answered is not one of the n.
- `self-repair` (b4): the seed's answer, then rounds of "check it, repair it with the check's
  message" (b1's repair prompt, with the seed's code step's call parameters) until the visible
  checks pass or the budget is spent; the last answer is kept.
- `oracle-select`: the inner loop with candidates ranked by hidden utility instead of S_F. Only
  the bench can run it: the loop gets a function of a candidate's output and never sees the
  tests behind it. An upper bound on what selection can do with the same proposals.

Each returns a `RepairResult`-shaped dict (`to_json()`), plus ``rounds``: per loop iteration,
whether the budget cut it before the optimizer could propose (the κ bookkeeping).
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

STRATEGIES = ("repair", "best-of-n", "self-repair", "oracle-select")
# Samples (best-of-n) or rounds (self-repair) at most when a budget sets no cap that ends them.
MAX_RUNS = 64
# best-of-n samples run this many at a time; the shared meter stops the wave that overdraws.
WAVE = 4
SAMPLE_TEMPERATURE = 0.8
# Call parameters a self-repair round copies from the seed's code step, when they are literals.
_COPIED_PARAMS = ("max_tokens", "temperature", "top_p", "model")

_ROUND_TEMPLATE = '''"""Self-repair round {round}: the previous answer, checked, and repaired with the message."""

PREVIOUS = {previous!r}


def solve(task):
    code = PREVIOUS
    check = verify(code)
    if not check.passed:
        code = llm(f{prompt!r}{params})
    return extract_code(code) or code
'''


class RoundLog:
    """Collects, from a repair's events, what each loop iteration came to: whether the
    optimizer proposed, whether the budget refused its call (a budget-cut iteration), and how
    many candidates ran."""

    def __init__(self) -> None:
        self.rounds: dict[int, dict[str, Any]] = {}

    def __call__(self, event) -> None:
        from flowmend.engine import IterationEvent, LlmEvent, MenuEvent

        if isinstance(event, MenuEvent):
            self._round(event.iteration)["menu"] = event.size
        elif isinstance(event, LlmEvent) and event.role == "optimizer" \
                and event.purpose == "choice":
            self._round(event.iteration)["budget_cut"] = event.budget_stop is not None
        elif isinstance(event, IterationEvent):
            self._round(event.iteration)["candidates"] = event.candidates

    def _round(self, k: int) -> dict[str, Any]:
        return self.rounds.setdefault(k, {"iteration": k, "menu": None, "budget_cut": False,
                                          "candidates": 0})

    def to_json(self) -> list[dict[str, Any]]:
        return [self.rounds[k] for k in sorted(self.rounds)]


def solve_with(strategy: str, seed_source: str, task, *, program, optimizer, sandbox, config,
               utility: Callable[[str], float] | None = None) -> dict:
    """Run one method's strategy on one task; ``utility`` (hidden utility of an output) is
    needed by `oracle-select` alone."""
    from flowmend.engine import repair

    if strategy in ("repair", "oracle-select"):
        if strategy == "oracle-select" and utility is None:
            raise ValueError("oracle-select needs the hidden utility of an output")
        log = RoundLog()
        result = repair(seed_source, task, program=program, optimizer=optimizer,
                        sandbox=sandbox, config=config, on_event=log,
                        rank_by=utility if strategy == "oracle-select" else None).to_json()
        return {**result, "rounds": log.to_json()}
    runs = _Runs(seed_source, task, program=program, optimizer=optimizer, sandbox=sandbox,
                 config=config)
    if strategy == "best-of-n":
        return runs.best_of_n()
    if strategy == "self-repair":
        return runs.self_repair()
    raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")


class _Runs:
    """Repairs of 0 iterations on one shared meter, gathered into one result."""

    def __init__(self, seed_source, task, *, program, optimizer, sandbox, config):
        from flowmend.engine import Meter

        self.seed_source = seed_source
        self.task = task
        self.models = {"program": program, "optimizer": optimizer, "sandbox": sandbox}
        self.config = replace(config, iterations=0)
        self.meter = Meter(config.budget)
        self.started = time.monotonic()

    def run(self, source: str, pre_patches=(), *, template: bool = False) -> dict:
        """One repair of ``source`` on the shared meter; a ``template`` (a self-repair round)
        is read as this module writes it, whatever entry and callees the seed has."""
        from flowmend.engine import repair

        config = replace(self.config, pre_patches=tuple(pre_patches))
        if template:
            config = replace(config, entry="solve", step_callees=("llm",))
        return repair(source, self.task, config=config, meter=self.meter, **self.models).to_json()

    # -- best-of-n ----------------------------------------------------------------------

    def best_of_n(self) -> dict:
        sampling = self._sampling_patches()
        pool: list[dict] = []
        with ThreadPoolExecutor(max_workers=WAVE) as workers:
            while len(pool) < MAX_RUNS and (not pool or self.meter.exhausted() is None):
                # The greedy answer runs alone first: in a wave, a sample could take the
                # budget's last call from it.
                greedy = self.config.pre_patches
                wave = [greedy] if not pool else [sampling] * min(WAVE, MAX_RUNS - len(pool))
                runs = list(workers.map(lambda patches: self.run(self.seed_source, patches),
                                        wave))
                answered = 0
                for patches, result in zip(wave, runs):
                    if result.get("status") == "error":
                        return self._combine(result, [], pool=True)
                    seed = result["candidates"][0]
                    if pool and _refused(seed):
                        continue  # the budget refused it before it could answer: no sample
                    answered += 1
                    pool.append({**seed, "index": len(pool), "selected": False,
                                 "patch": None if patches is greedy else _patch_json(patches)})
                if not sampling or not answered:
                    # Nothing to sample (the greedy answer is all there is), or the budget
                    # refuses what is left even where no cap reads as spent (a prompt that
                    # no longer fits).
                    break
        best = max(range(len(pool)), key=lambda i: (pool[i]["score"], -pool[i]["tokens"]))
        pool[best]["selected"] = True
        return self._combine(runs[-1], pool, pool=True, final=pool[best])

    def _sampling_patches(self) -> list:
        """set-call-params(temperature=0.8) on every step of the (pre-patched) seed it applies to."""
        from flowmend.engine import Applied, Patch, apply_patches

        patches = []
        for step in _steps(self.seed_source, self.config):
            patch = Patch("set-call-params", {"step": step.id},
                          {"temperature": SAMPLE_TEMPERATURE})
            if isinstance(apply_patches(self.seed_source, [*self.config.pre_patches, *patches,
                                                           patch]), Applied):
                patches.append(patch)
        return [*self.config.pre_patches, *patches] if patches else []

    # -- self-repair --------------------------------------------------------------------

    def self_repair(self) -> dict:
        result = self.run(self.seed_source, self.config.pre_patches)
        if result.get("status") == "error":
            return self._combine(result, [], pool=False)
        chain = [{**result["candidates"][0], "selected": True}]
        rounds: list[dict[str, Any]] = []
        call = _repair_call(self.seed_source, self.config)
        while not chain[-1]["passed_visible"] and len(chain) < MAX_RUNS:
            k = len(chain)
            if self.meter.exhausted() is not None:
                break
            source = _ROUND_TEMPLATE.format(round=k, previous=chain[-1]["output"], **call)
            result = self.run(source, template=True)
            if result.get("status") == "error":
                return self._combine(result, chain, pool=False)
            c = result["candidates"][0]
            refused = _refused(c)
            # A model that did not answer looks the same; only the meter tells a budget cut.
            cut = refused and bool(self.meter.stopped_by or self.meter.exhausted())
            rounds.append({"iteration": k, "menu": None, "budget_cut": cut,
                           "candidates": 0 if refused else 1})
            if refused:
                break
            parent = chain[-1]
            chain.append({**c, "iteration": k, "index": 1, "selected": True,
                          "parent": [parent["iteration"], parent["index"]]})
        out = self._combine(result, chain, pool=False, final=chain[-1])
        out["iterations"] = len(rounds)  # a round the model did not answer was still run
        out["rounds"] = rounds
        return out

    # -- one result ---------------------------------------------------------------------

    def _combine(self, last: dict, candidates: list[dict], *, pool: bool,
                 final: dict | None = None) -> dict:
        """The runs as one result: the meter's totals, every candidate, the final answer."""
        from flowmend.engine import diff

        meter = self.meter
        if final is None:
            out = dict(last)
        else:
            ok = bool(final["passed_visible"])
            stopped = None if ok else (meter.stopped_by or meter.exhausted())
            out = {
                **last,
                "status": "solved" if ok else "budget_exhausted" if stopped
                else "iterations_exhausted",
                "stopped_by": "visible_checks" if ok else stopped or "iterations",
                "passed_visible": ok,
                "final_source": final["source"],
                "diff": diff(self.seed_source, final["source"], "workflow.py"),
                "output": final["output"],
                "feedback": final.get("feedback"),
            }
        out.update(calls=meter.calls, tokens=meter.tokens, cost=meter.cost,
                   candidates=candidates, iterations=0, rounds=[],
                   wall_s=time.monotonic() - self.started)
        if pool:
            out["samples"] = len(candidates)
        return out


def _refused(candidate: dict) -> bool:
    """A run the budget stopped before any answer: no output, nothing spent on tokens."""
    return not candidate.get("output") and not candidate.get("tokens")


def _patch_json(patches) -> Any:
    if not patches:
        return None
    if len(patches) == 1:
        return patches[0].to_json()
    return [p.to_json() for p in patches]


def _steps(source: str, config):
    from flowmend.engine import parse_workflow

    return parse_workflow(source, entry=config.entry, step_callees=config.step_callees).steps


def _repair_call(seed_source: str, config) -> dict[str, str]:
    """The repair prompt of b1 (insert-verify-step's default instruction, the check's kind and
    feedback, the code) and the literal call parameters of the seed's code step (the step
    named ``code``, else the last), greedy unless the seed says otherwise."""
    from flowmend.engine import default_library

    instruction = default_library().get("insert-verify-step").Args().instruction
    instruction = instruction.replace("{", "{{").replace("}", "}}")  # literal in an f-string
    steps = _steps(seed_source, config)
    step = next((s for s in steps if s.id == "code"), steps[-1] if steps else None)
    params: dict[str, Any] = {"temperature": 0.0}
    for name, text in (step.params if step is not None else ()):
        if name in _COPIED_PARAMS:
            try:
                params[name] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                continue  # not a literal (self.temperature): the round cannot copy it
    prompt = (f"{instruction}\n\nCheck ({{check.kind}}):\n{{check.feedback}}\n\n"
              "Code:\n{code}")
    return {"prompt": prompt,
            "params": "".join(f", {k}={v!r}" for k, v in sorted(params.items()))}
