"""The broker: every concurrently running workflow's requests, sent to one backend in batches.

Callers (threads, asyncio tasks, the sandbox's RPC handler) submit one request each and block
on a future. A single collector thread waits briefly for more requests, then sends everything
pending as one engine call. With a backend that answers one batch at a time, new requests pile
up while the engine is busy and go out together in the next call. With a concurrent backend
(vLLM's engine loop, a fleet of servers), each batch is sent at once and joins the engine's
running batch, so a workflow whose call returns early does not wait for the slowest request of
someone else's batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from flowmend.llm._types import Backend, Completion, ModelError, Request


class BrokerClosed(ModelError):
    """The broker was closed before it could answer."""


@dataclass(frozen=True)
class BrokerStats:
    """What the broker sent to its backend so far.

    Attributes:
        batches: engine calls made (failed ones included).
        requests: requests answered.
        failed_batches: engine calls that raised; their callers got the exception.
        prompt_tokens, completion_tokens, cost: sums over the answered requests.
        busy_s: wall time during which at least one engine call was under way.
        batch_sizes: the size of every engine call, in order.
    """

    batches: int = 0
    requests: int = 0
    failed_batches: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    busy_s: float = 0.0
    batch_sizes: tuple[int, ...] = ()

    @property
    def throughput(self) -> float:
        """Completion tokens per second of engine time."""
        return self.completion_tokens / self.busy_s if self.busy_s > 0 else 0.0

    @property
    def mean_batch(self) -> float:
        return sum(self.batch_sizes) / len(self.batch_sizes) if self.batch_sizes else 0.0

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        data["throughput"] = self.throughput
        return data


@dataclass
class _Pending:
    request: Request
    future: Future
    arrived: float


class Broker:
    """Batches the requests of many callers into engine calls on one backend.

    Args:
        backend: answers the batches; only the broker calls it (from its collector thread, or
            from sender threads when `backend.concurrent`).
        max_batch: the most requests in one engine call.
        max_wait_s: after the latest arrival, how long to wait for another before sending.
        max_delay_s: the longest the oldest pending request waits for company.

    A batch goes out as soon as any of these holds: `max_batch` requests are pending; every
    workflow registered with `attach()` has a request pending (nobody else is coming);
    no request arrived for `max_wait_s`; the oldest has waited `max_delay_s`.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        max_batch: int = 256,
        max_wait_s: float = 0.05,
        max_delay_s: float = 1.0,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.backend = backend
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_delay_s = max_delay_s
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._attached = 0
        self._closed = False
        self._stats = BrokerStats()
        self._in_flight = 0  # requests sent and not yet answered
        self._calls_running = 0
        self._busy_since = 0.0
        self._senders = (
            ThreadPoolExecutor(max_workers=64, thread_name_prefix="flowmend-broker-send")
            if getattr(backend, "concurrent", False) else None
        )
        self._thread = threading.Thread(target=self._collect, name="flowmend-broker", daemon=True)
        self._thread.start()

    @property
    def model(self) -> str:
        return self.backend.model

    def submit(self, request: Request) -> "Future[Completion]":
        """Queue one request; the future holds its completion or the backend's exception.

        Raises ValueError at once when the backend cannot answer this request at all.
        """
        if not isinstance(request, Request):
            raise TypeError(f"submit takes a Request, not {type(request).__name__}")
        self.backend.check(request)
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise BrokerClosed("the model broker is closed")
            self._pending.append(_Pending(request, future, time.monotonic()))
            self._cond.notify_all()
        return future

    def call(self, request: Request, timeout: float | None = None) -> Completion:
        """Submit and wait: what a workflow's `llm()` does."""
        return self.submit(request).result(timeout)

    async def acall(self, request: Request) -> Completion:
        """`call` for asyncio workflows: waits without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(request))

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """Submit several requests together and wait for all (they join the same batch)."""
        futures = [self.submit(r) for r in requests]
        return [f.result() for f in futures]

    def serve_json(self, payload: Any) -> dict[str, Any]:
        """Answer a request given as JSON with a completion as JSON: for the sandbox's RPC.

        Raises ValueError on a malformed request; backend errors propagate.
        """
        return self.call(Request.from_json(payload)).to_json()

    @contextlib.contextmanager
    def attach(self) -> Iterator[None]:
        """Register a running workflow for as long as the block lasts.

        While workflows are attached, the broker sends a batch the moment each of them has a
        request pending instead of waiting out `max_wait_s`.
        """
        with self._cond:
            self._attached += 1
        try:
            yield
        finally:
            with self._cond:
                self._attached -= 1
                self._cond.notify_all()

    def stats(self) -> BrokerStats:
        with self._cond:
            if not self._calls_running:
                return self._stats
            running = time.monotonic() - self._busy_since
            return dataclasses.replace(self._stats, busy_s=self._stats.busy_s + running)

    def close(self) -> None:
        """Answer what is pending, then stop the collector. The backend stays open."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()
            if self._senders is not None:
                self._senders.shutdown(wait=True)

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _collect(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                while not self._ready():
                    now = time.monotonic()
                    deadline = min(
                        self._pending[-1].arrived + self.max_wait_s,
                        self._pending[0].arrived + self.max_delay_s,
                    )
                    if now >= deadline:
                        break
                    self._cond.wait(deadline - now)
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                self._in_flight += len(batch)
            if self._senders is not None:
                self._senders.submit(self._dispatch, batch)
            else:
                self._dispatch(batch)

    def _ready(self) -> bool:
        waiting = len(self._pending)
        return (
            self._closed
            or waiting >= self.max_batch
            # every attached workflow is waiting on a request: nobody else is coming
            or (self._attached > 0 and waiting + self._in_flight >= self._attached)
        )

    def _dispatch(self, batch: list[_Pending]) -> None:
        sent = len(batch)
        batch = [p for p in batch if p.future.set_running_or_notify_cancel()]
        started = time.monotonic()
        with self._cond:
            if not self._calls_running:
                self._busy_since = started
            self._calls_running += 1
        completions: list[Completion] = []
        error: BaseException | None = None
        try:
            if batch:
                completions = self.backend.generate([p.request for p in batch])
                if len(completions) != len(batch):
                    raise ModelError(f"{self.backend.name} backend answered "
                                     f"{len(completions)} of {len(batch)} requests")
        except BaseException as err:  # every waiting caller gets it; the broker lives on
            error = err
        with self._cond:
            # Book the call before any caller wakes up: a caller that goes on to send its next
            # request must find itself no longer in flight (see `_ready`).
            self._calls_running -= 1
            self._in_flight -= sent
            s = self._stats
            busy = 0.0 if self._calls_running else time.monotonic() - self._busy_since
            if not batch:
                self._stats = dataclasses.replace(s, busy_s=s.busy_s + busy)
            elif error is not None:
                self._stats = dataclasses.replace(
                    s, batches=s.batches + 1, failed_batches=s.failed_batches + 1,
                    busy_s=s.busy_s + busy, batch_sizes=s.batch_sizes + (len(batch),))
            else:
                self._stats = dataclasses.replace(
                    s,
                    batches=s.batches + 1,
                    requests=s.requests + len(batch),
                    prompt_tokens=s.prompt_tokens + sum(c.prompt_tokens for c in completions),
                    completion_tokens=s.completion_tokens
                    + sum(c.completion_tokens for c in completions),
                    cost=s.cost + sum(c.cost for c in completions),
                    busy_s=s.busy_s + busy,
                    batch_sizes=s.batch_sizes + (len(batch),),
                )
            self._cond.notify_all()
        if error is not None:
            for pending in batch:
                pending.future.set_exception(error)
            return
        for pending, completion in zip(batch, completions):
            queued = max(0.0, started - pending.arrived)
            pending.future.set_result(dataclasses.replace(completion, queue_s=queued))
