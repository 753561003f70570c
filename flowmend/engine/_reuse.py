"""Greedy answers kept for one repair, so a candidate that leaves a step unchanged does not pay
for the same call twice.

A greedy request (temperature 0) whose model, prompt and sampling parameters are exactly those
of one already answered gets that answer: decoding it again would give the same text (up to the
engine's batch noise, see docs/loop.md). `max_tokens` needs care, because the budget may have
cut the request that was sent: an answer that ended by itself (finish reason ``stop``) after t
tokens is the answer to any `max_tokens` ≥ t; one cut by its length is the answer to that very
`max_tokens` only. Answers whose finish reason is not known are not kept.

Candidates of one iteration run in parallel: each reads what earlier runs left (`view`) and its
own earlier calls, never a sibling's, and `merge` keeps their answers once all are done. So which
calls are reused does not depend on which sibling asked first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Iterable

from flowmend.llm import Completion, Request


@dataclass(frozen=True)
class _Answer:
    completion: Completion
    natural: bool  # every sample ended by itself (stop), not by max_tokens
    tokens: int  # natural: the most completion tokens a sample took; else the max_tokens sent

    def answers(self, request: Request) -> bool:
        return self.tokens <= request.max_tokens if self.natural else \
            self.tokens == request.max_tokens


def _key(request: Request) -> str:
    """The request without its max_tokens, which `_Answer.answers` decides on."""
    return replace(request, max_tokens=1).key()


def _answer(completion: Completion, n: int) -> _Answer | None:
    reasons = completion.finish_reasons
    if len(reasons) != n or len(completion.texts) != n:
        return None
    if all(r == "stop" for r in reasons):
        # Per-sample counts are not known; their sum bounds each of them.
        return _Answer(completion, True, completion.completion_tokens)
    if all(r == "length" for r in reasons) and completion.completion_tokens % n == 0:
        return _Answer(completion, False, completion.completion_tokens // n)
    return None


class AnswerCache:
    """Greedy answers of one repair's program calls, shared by its runs through `view`s."""

    def __init__(self) -> None:
        self._answers: dict[str, list[_Answer]] = {}

    def view(self) -> "RunAnswers":
        """What one run may reuse: the answers merged so far, then its own."""
        return RunAnswers(self._answers)

    def merge(self, views: Iterable["RunAnswers"]) -> None:
        """Keep the answers of finished runs, in the order given (a candidate's index)."""
        for view in views:
            for key, answers in view._own.items():
                self._answers.setdefault(key, []).extend(answers)


class RunAnswers:
    """One run's side of the cache: `get` before a call, `put` after it."""

    def __init__(self, shared: dict[str, list[_Answer]]):
        self._shared = shared
        self._own: dict[str, list[_Answer]] = {}
        self._lock = threading.Lock()

    def get(self, request: Request) -> Completion | None:
        """The answer already obtained for this greedy request, if any."""
        if not request.greedy:
            return None
        key = _key(request)
        with self._lock:
            for answer in (*self._shared.get(key, ()), *self._own.get(key, ())):
                if answer.answers(request):
                    return answer.completion
        return None

    def put(self, request: Request, completion: Completion) -> None:
        """Keep the answer to a greedy request (as asked; the budget may have cut what was sent)."""
        if not request.greedy:
            return
        answer = _answer(completion, request.n)
        if answer is not None:
            with self._lock:
                self._own.setdefault(_key(request), []).append(answer)
