"""A small study for the meta loop's tests: 40 MBPP tasks and a scripted model that knows
the reference solution of half of them, so set-ups run for real in the sandbox, fast.

Run as ``python -m tests.meta.oracle OUT [--finalize] [--slow S]``: one worker on the study
in OUT (the multi-worker and kill -9 tests start several).
"""

from __future__ import annotations

import argparse
import hashlib
import threading
import time
from pathlib import Path
from typing import Sequence

from flowmend import seeds
from flowmend.bench.datasets import load
from flowmend.engine import Budget
from flowmend.llm import Backend, Broker, Completion, PriceTable, Request
from flowmend.llm._config import Models
from flowmend.meta import TrainPlan

PROBLEMS = tuple(load("mbpp")[:40])


def solvable(task_id: str) -> bool:
    return hashlib.sha256(task_id.encode()).digest()[0] % 2 == 0


class OracleBackend(Backend):
    """Answers a request that quotes a task with its reference code when the task is
    `solvable`, with a wrong function otherwise; anything else gets "1"."""

    name = "oracle"

    def __init__(self, *, delay_s: float = 0.0):
        self.model = "oracle-1"
        self.prices = PriceTable()
        self.delay_s = delay_s
        self.requests = 0
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        time.sleep(self.delay_s)
        out = []
        for r in requests:
            with self._lock:
                self.requests += 1
            text = r.prompt if r.prompt is not None else r.messages[-1][1]
            answer = "1"
            if text.startswith("Below is a prompt template"):
                # A meta rewrite: one variant that keeps its fields, one that loses them.
                template = text.split("<<<\n", 1)[1].split("\n>>>", 1)[0]
                texts = ("Be brief.\n" + template, "No fields here.")[: r.n]
                out.append(Completion(texts=texts, prompt_tokens=10, completion_tokens=10,
                                      latency_s=0.0, model=self.model, cost=20.0,
                                      finish_reasons=("stop",) * len(texts)))
                continue
            for p in PROBLEMS:
                if p.task.prompt.splitlines()[0] in text:
                    code = p.reference if solvable(p.task.task_id) else \
                        f"def {p.task.entry_point}(*args):\n    return None\n"
                    answer = f"```python\n{code}\n```"
                    break
            prompt_tokens = max(1, len(text.split()))
            completion_tokens = len(answer.split()) * r.n
            out.append(Completion(texts=(answer,) * r.n, prompt_tokens=prompt_tokens,
                                  completion_tokens=completion_tokens, latency_s=self.delay_s,
                                  model=self.model, cost=float(prompt_tokens + completion_tokens),
                                  finish_reasons=("stop",) * r.n))
        return out


class RepairOracle(OracleBackend):
    """A model that gets every task wrong at first and fixes it when asked to repair code that
    failed a check (so inserting a verify step helps), and, as the optimizer, picks the menu
    item of a mined macro (a name with "-then-") when one is offered, else the first."""

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        out = []
        for r in requests:
            text = r.prompt if r.prompt is not None else r.messages[-1][1]
            if "Edits you can make:" in text:
                lines = text.split("Edits you can make:\n", 1)[1].splitlines()
                answer = next((line.split(".")[0] for line in lines if "-then-" in line), "1")
            else:
                problem = next((p for p in PROBLEMS if f"def {p.task.entry_point}(" in text
                                or p.task.prompt.splitlines()[0] in text), None)
                code = "def nothing():\n    return None\n" if problem is None else (
                    problem.reference if "failed a check" in text
                    else f"def {problem.task.entry_point}(*args):\n    return None\n")
                answer = f"```python\n{code}\n```"
            out.append(Completion(texts=(answer,) * r.n, prompt_tokens=20,
                                  completion_tokens=20, latency_s=0.0, model=self.model,
                                  cost=40.0, finish_reasons=("stop",) * r.n))
        return out


def models(delay_s: float = 0.0) -> Models:
    broker = Broker(OracleBackend(delay_s=delay_s))
    return Models(broker, broker)


def plan(out: Path, **overrides) -> TrainPlan:
    values = dict(suite="mbpp", out=out, trials=4,
                  budget=Budget(calls=4, tokens=3000, wall_s=60), model="oracle",
                  backend="replay",
                  seeds={s: seeds.load(s) for s in ("single_shot", "plan_then_code")},
                  minibatch=4, confirm_top=2, concurrency=4, stale_after_s=600)
    values.update(overrides)
    return TrainPlan(**values)


def main() -> None:
    from flowmend.meta import train

    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--finalize", action="store_true")
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--follower", action="store_true")
    args = parser.parse_args()
    train(plan(Path(args.out), trials=args.trials), finalize=args.finalize,
          problems=PROBLEMS, models=models(args.slow), lead=not args.follower)


if __name__ == "__main__":
    main()
