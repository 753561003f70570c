"""The trace of one repair: one frozen event class per kind, written as JSONL as it happens.

Every event is data (`to_json()` is its trace line without the time); the live view and any
other `on_event` listener read fields, not string keys.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "ErrorEvent", "IterationEvent", "LlmEvent", "MenuEvent", "ProposalEvent", "StartEvent",
    "StopEvent", "TraceEvent", "VerdictEvent",
]


@dataclass(frozen=True)
class TraceEvent:
    """Base of the events; ``t`` is seconds since the repair started, set by the trace."""

    EVENT: ClassVar[str] = ""
    # Fields left out of the line when None (a failed call has no token counts, so a reader
    # can ask `"prompt_tokens" in line`); every other field is always written.
    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        """The trace line: ``{"event": kind, field: value, ...}`` (without ``t`` until the
        trace has stamped it)."""
        data: dict[str, Any] = {"event": self.EVENT}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self.OPTIONAL:
                continue
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data


@dataclass(frozen=True)
class StartEvent(TraceEvent):
    """The repair begins: its task and the loop's shape."""

    EVENT: ClassVar[str] = "start"
    task: str
    mode: str
    iterations: int
    proposals: int
    budget: dict[str, Any]
    config_digest: str
    library: str = ""
    t: float = 0.0


@dataclass(frozen=True)
class MenuEvent(TraceEvent):
    """The menu of iteration k: how many edits apply and which were shown to the optimizer."""

    EVENT: ClassVar[str] = "menu"
    OPTIONAL: ClassVar[tuple[str, ...]] = ("shown",)
    iteration: int
    size: int
    shown: tuple[str, ...] | None = None
    t: float = 0.0


@dataclass(frozen=True)
class ProposalEvent(TraceEvent):
    """What became of one optimizer answer: applied, duplicate, invalid, not applicable, or
    outside the menu (then ``answer`` holds what it said)."""

    EVENT: ClassVar[str] = "proposal"
    OPTIONAL: ClassVar[tuple[str, ...]] = ("label", "patch", "detail", "answer")
    iteration: int
    verdict: str
    label: str | None = None
    patch: dict[str, Any] | None = None
    detail: str | None = None
    answer: str | None = None
    t: float = 0.0


@dataclass(frozen=True)
class LlmEvent(TraceEvent):
    """One LLM call, by the program (a step of the workflow) or the optimizer (a choice or a
    text). A call that failed has ``error`` and no token counts; one the budget refused also
    names the cap in ``budget_stop``. A ``reused`` call was answered with an answer the repair
    already had: not sent, booked at 0 tokens and 0 cost."""

    EVENT: ClassVar[str] = "llm"
    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "purpose", "step", "prompt_sha", "prompt_tokens", "completion_tokens", "latency_s",
        "model", "cost", "answers", "error", "reused", "budget_stop",
    )
    role: str
    iteration: int
    purpose: str | None = None
    step: str | None = None
    prompt_sha: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    model: str | None = None
    cost: float | None = None
    answers: tuple[str, ...] | None = None
    error: str | None = None
    reused: bool | None = None
    budget_stop: str | None = None
    t: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        if self.role == "program":  # a program call always says its step (None: outside one)
            data.setdefault("step", None)
            data.setdefault("error", None)
        return data


@dataclass(frozen=True)
class VerdictEvent(TraceEvent):
    """One candidate ran and was checked: its run status, feedback and score."""

    EVENT: ClassVar[str] = "verdict"
    OPTIONAL: ClassVar[tuple[str, ...]] = ("budget_stop",)
    iteration: int
    index: int
    label: str | None
    run_status: str
    error_type: str | None
    score: float
    kind: str
    passed: int
    total: int
    summary: str
    tokens: int
    selected: bool
    budget_stop: str | None = None  # the cap that refused one of its calls, if one did
    t: float = 0.0


@dataclass(frozen=True)
class IterationEvent(TraceEvent):
    """Iteration k is over: how many candidates ran and whether the best replaced the incumbent."""

    EVENT: ClassVar[str] = "iteration"
    OPTIONAL: ClassVar[tuple[str, ...]] = ("best_score", "incumbent_score", "replaced")
    iteration: int
    candidates: int
    best_score: float | None = None
    incumbent_score: float | None = None
    replaced: bool | None = None
    t: float = 0.0


@dataclass(frozen=True)
class StopEvent(TraceEvent):
    """The repair ended: why, and what it spent."""

    EVENT: ClassVar[str] = "stop"
    status: str
    stopped_by: str | None
    iterations: int
    calls: int
    tokens: int
    passed_visible: bool
    t: float = 0.0


@dataclass(frozen=True)
class ErrorEvent(TraceEvent):
    """The seed could not be run at all (not Python, no entry, a pre-patch that fails)."""

    EVENT: ClassVar[str] = "error"
    message: str
    t: float = 0.0


class Trace:
    """The JSONL trace of one repair: every LLM call, proposal, patch and verdict, flushed as it goes."""

    def __init__(self, path: Path | None, on_event: Callable[[TraceEvent], None] | None):
        self.path = path
        self._on_event = on_event
        self._lock = threading.Lock()
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "w", encoding="utf-8")
        self._t0 = time.monotonic()

    def __call__(self, event: TraceEvent) -> None:
        event = replace(event, t=round(time.monotonic() - self._t0, 4))
        with self._lock:
            if self._file is not None:
                self._file.write(json.dumps(event.to_json(), sort_keys=True, default=str) + "\n")
                self._file.flush()
        if self._on_event is not None:
            self._on_event(event)

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
