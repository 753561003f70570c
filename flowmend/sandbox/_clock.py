"""A run's clock: wall time that stands still only while the run waits for the model.

Each RPC call in flight is work, and counts, until its handler says it waits for the model
(`model_wait()`); the clock stops while calls are in flight and every one of them waits so. A
nested sandbox run (a workflow's `verify`), or any other helper, thus counts against the run's
own timeout, and only the model's latency does not.
"""

from __future__ import annotations

import threading


class RunClock:
    """Seconds a run has used, RPC work included and model waits excluded."""

    def __init__(self, began: float):
        self._lock = threading.Lock()
        self._began = began
        self._working = 0  # calls in flight doing work
        self._waiting = 0  # calls in flight waiting for the model
        self._stopped_s = 0.0  # seconds stood still, before `_since`
        self._since: float | None = None  # when the clock stopped, while it stands still

    def call(self, now: float, *, started: bool) -> None:
        """A call started (is now work) or ended (was work: `model_wait()` has been left)."""
        with self._lock:
            self._working += 1 if started else -1
            self._retime(now)

    def wait(self, now: float, *, started: bool) -> bool:
        """A call's handler began or ended a model wait; True when the clock runs again."""
        with self._lock:
            delta = 1 if started else -1
            self._waiting += delta
            self._working -= delta
            was_stopped = self._since is not None
            self._retime(now)
            return was_stopped and self._since is None

    @property
    def running(self) -> bool:
        return self._since is None

    def stopped_s(self, now: float) -> float:
        """Seconds the clock has stood still since the run began."""
        with self._lock:
            return self._stopped_s + (now - self._since if self._since is not None else 0.0)

    def used_s(self, now: float) -> float:
        return now - self._began - self.stopped_s(now)

    def _retime(self, now: float) -> None:
        stop = self._waiting > 0 and self._working == 0
        if stop and self._since is None:
            self._since = now
        elif not stop and self._since is not None:
            self._stopped_s += now - self._since
            self._since = None
