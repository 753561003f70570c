"""The data the sandbox takes and gives back: limits in, verdicts out, all plain JSON; the RPC
handler's type, and the one error it raises."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

STATUSES = ("ok", "error", "timeout", "memory", "crash", "output_limit", "harness_error")
TEST_STATUSES = (
    "passed", "failed", "error", "timeout", "memory", "crash", "output_limit", "exited", "not_run"
)

RpcHandler = Callable[[str, Any], Any]
"""`rpc(method, payload)`, run in a parent thread for each `flowmend_rpc.call` from inside."""


class SandboxError(RuntimeError):
    """The sandbox itself could not run (not a verdict on the candidate)."""


@dataclass(frozen=True)
class Limits:
    """What one execution may use."""

    timeout_s: float = 10.0
    """Wall-clock seconds for the whole execution (all of its tests together, under `check`),
    RPC handlers' time included, except where a handler waits for the model (`model_wait`)."""
    memory_mb: int = 1024
    """Address space of the process, in MiB; allocations past it raise MemoryError."""
    output_bytes: int = 1 << 20
    """Cap on stdout and on stderr, each; a run that writes more is killed (`output_limit`)."""
    cpu_s: int | None = None
    """CPU seconds (RLIMIT_CPU); default: the wall timeout rounded up, plus one."""
    file_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE)."""
    tmp_mb: int = 64
    """Size of the private, per-execution /tmp."""
    open_files: int = 64
    """Open file descriptors (RLIMIT_NOFILE)."""
    processes: int = 64
    """Processes and threads of the sandbox uid (RLIMIT_NPROC)."""
    rpc_bytes: int = 1 << 20
    """Largest RPC request or answer, in bytes of JSON."""

    def __post_init__(self) -> None:
        if not (0 < self.timeout_s <= 24 * 3600) or math.isnan(self.timeout_s):
            raise ValueError(f"timeout_s must be in (0, 86400], got {self.timeout_s}")
        for name in ("memory_mb", "output_bytes", "file_mb", "tmp_mb", "open_files",
                     "processes", "rpc_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb must be at least 64 (the interpreter itself), got {self.memory_mb}")
        if self.open_files < 16:
            raise ValueError(f"open_files must be at least 16, got {self.open_files}")
        if self.cpu_s is not None and self.cpu_s <= 0:
            raise ValueError(f"cpu_s must be positive, got {self.cpu_s}")

    def for_child(self) -> dict[str, int]:
        cpu = self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout_s) + 1
        return {
            "memory_mb": self.memory_mb, "cpu_s": int(cpu), "file_mb": self.file_mb,
            "tmp_mb": self.tmp_mb, "open_files": self.open_files, "processes": self.processes,
            "rpc_bytes": self.rpc_bytes,
        }


@dataclass(frozen=True)
class ExecResult:
    """The verdict on one execution, decided in the parent from what it observed."""

    status: str
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    wall_s: float = 0.0
    rpc_wait_s: float = 0.0  # seconds not counted toward the timeout: waits for the model
    cpu_s: float | None = None
    isolation: dict[str, Any] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    traceback_tail: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TestResult:
    """One test snippet's outcome."""

    index: int
    status: str
    error_type: str | None = None
    message: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class CheckResult:
    """Code plus tests. `status` is "passed" when every test passed, "failed" when the code
    loaded and some test did not, otherwise the status of the load ("error", "timeout",
    "memory", "crash", "output_limit", "harness_error"), with every test counted failed."""

    status: str
    passed: int
    failed: int
    total: int
    results: tuple[TestResult, ...]
    run: ExecResult

    @property
    def all_passed(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status, "passed": self.passed, "failed": self.failed,
            "total": self.total, "results": [asdict(r) for r in self.results],
            "run": self.run.to_json(),
        }
