"""Small deterministic backends for testing the broker and replay without a model."""

from __future__ import annotations

import threading
import time
from typing import Sequence

from flowmend.llm import Backend, Completion, PriceTable, Request


class EchoBackend(Backend):
    """Answers each prompt with itself reversed, cut to `max_tokens` words; counts tokens as
    words, before the call (`count_prompt_tokens`) as after it; records its batches."""

    name = "echo"
    exact_prompt_tokens = True

    def count_prompt_tokens(self, request: Request) -> int:
        return len((request.prompt or "").split()) or 1

    def __init__(self, *, delay_s: float = 0.0, fail_on: str | None = None, prices=None):
        self.model = "echo-1"
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.prices = prices or PriceTable()
        self.batches: list[list[Request]] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        with self._lock:
            self.batches.append(list(requests))
            self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        if self.fail_on is not None and any(r.prompt == self.fail_on for r in requests):
            raise RuntimeError(f"engine failed on {self.fail_on!r}")
        out = []
        for r in requests:
            text = (r.prompt or r.messages[-1][1])[::-1]
            if len(text.split()) > r.max_tokens:
                text = " ".join(text.split()[: r.max_tokens])
            prompt_tokens = self.count_prompt_tokens(r)
            completion_tokens = len(text.split()) * r.n
            out.append(
                Completion(
                    texts=(text,) * r.n,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    latency_s=self.delay_s,
                    model=self.model,
                    cost=self.prices.cost(self.model, prompt_tokens, completion_tokens),
                    finish_reasons=("stop",) * r.n,
                )
            )
        return out
