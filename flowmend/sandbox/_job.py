"""What passes between the sandbox's threads: a queued job, and what the parent saw of one
attempt at it (a check whose child died mid-test takes several)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

from flowmend.sandbox._types import Limits, RpcHandler


@dataclass
class Job:
    mode: str  # "exec" | "check"
    source: str
    tests: list[str]
    limits: Limits
    test_timeout_s: float
    rpc: RpcHandler | None
    future: Future = field(default_factory=Future)
    depth: int = 0  # 0: the caller's; d: asked for by an RPC handler of a depth d-1 run


@dataclass
class Attempt:
    """What the parent saw of one forked child."""

    status: str | None = None  # set when the parent killed it: timeout / output_limit / ...
    report: dict | None = None  # the zygote's exit report
    records: list[dict] = field(default_factory=list)
    tampered: str | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    wall_s: float = 0.0
    rpc_wait_s: float = 0.0  # seconds the run's clock stood still: waits for the model
    zygote_lost: bool = False
    aborted: bool = False  # killed because the sandbox was closing on an error
    holding: bool = True  # whether this run still holds its CPU slot
