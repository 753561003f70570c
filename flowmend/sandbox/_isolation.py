"""How a zygote is started: inside bubblewrap namespaces when the machine allows it.

Three modes, always reported in each verdict's `isolation`:
- `namespaces` (running as root): pid, net, mount, ipc and uts namespaces without a user
  namespace, so the zygote keeps the right to give each child its own uid, tmpfs and limits.
- `userns` (unprivileged): the same plus a user namespace; children share the zygote's uid.
- `rlimits` (no bwrap, or it cannot make namespaces): resource limits and session kill only,
  with a loud warning in every verdict.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

INNER_DIR = Path(__file__).resolve().parent / "_inner"
INNER_MOUNT = "/flowmend_inner"
FIRST_UID = 100_000  # children of zygote k run as FIRST_UID + k when the zygote may set uids

NO_NAMESPACES_WARNING = (
    "WARNING: no namespaces (bubblewrap missing or refused); the candidate ran with resource "
    "limits and a session kill only: it could read and write what this user can"
)


@dataclass(frozen=True)
class Isolation:
    mode: str  # "namespaces" | "userns" | "rlimits"
    bwrap: str | None
    python: str
    warning: str | None = None
    reason: str | None = None
    mounts: tuple[str, ...] = field(default=())

    @property
    def in_namespace(self) -> bool:
        return self.mode != "rlimits"

    @property
    def sets_uid(self) -> bool:
        return self.mode == "namespaces"

    def describe(self, uid: int | None) -> dict:
        namespaces = {"namespaces": ["pid", "net", "mount", "ipc", "uts"],
                      "userns": ["user", "pid", "net", "mount", "ipc", "uts"],
                      "rlimits": []}[self.mode]
        return {
            "mode": self.mode, "namespaces": namespaces, "uid": uid,
            "filesystem": "read-only system and Python, private /tmp, nothing else"
            if self.in_namespace else "host filesystem (no isolation)",
            "network": "none (empty net namespace)" if self.in_namespace else "host network",
            "environment": "empty", "rlimits": ["AS", "CPU", "FSIZE", "NOFILE", "NPROC", "CORE"],
            "warning": self.warning,
        }

    @property
    def uses_mother(self) -> bool:
        """Zygotes are forked into namespaces of their own by a mother zygote (needs root)."""
        return self.mode == "namespaces"

    def zygote_command(self, fd: int, info_fd: int | None = None, role: str = "ns") -> list[str]:
        """The command that starts a zygote (or, `role="mother"`, a mother zygote) whose control
        socket is descriptor `fd`; bwrap writes the host pid of the namespace's init to
        `info_fd`."""
        tail = ["-I", "-S", "-B"]
        if self.mode == "rlimits":
            return [self.python, *tail, str(INNER_DIR / "zygote.py"), str(fd), "plain"]
        cmd = [self.bwrap, "--die-with-parent", "--new-session", "--unshare-pid",
               "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if info_fd is not None:
            cmd += ["--info-fd", str(info_fd)]
        if self.mode == "userns":
            cmd.append("--unshare-user")
        else:
            cmd += ["--cap-drop", "ALL"]
            for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SYS_ADMIN", "CAP_KILL", "CAP_DAC_OVERRIDE",
                        "CAP_SYS_NICE"):
                cmd += ["--cap-add", cap]
        for spec in self.mounts:
            cmd += spec.split("\0")
        cmd += ["--ro-bind", str(INNER_DIR), INNER_MOUNT, "--dev", "/dev", "--proc", "/proc",
                "--tmpfs", "/tmp", "--chdir", "/tmp", "--"]
        return cmd + [self.python, *tail, f"{INNER_MOUNT}/zygote.py", str(fd), role]


def _python() -> str:
    """The real interpreter behind this (possibly virtual) environment."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


def _system_mounts(python: str) -> tuple[str, ...]:
    """Read-only binds of the system and the interpreter's prefix; the rest stays hidden."""
    specs: list[str] = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            specs.append(f"--symlink\0{os.readlink(top)}\0{top}")
        elif os.path.isdir(top):
            specs.append(f"--ro-bind\0{top}\0{top}")
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith("/usr/") and prefix != "/usr":
        # Intermediate folders (say /root) are made world-readable directories on the
        # sandbox's own root; only the interpreter's prefix is bound inside them.
        parts = Path(prefix).parts
        for depth in range(2, len(parts)):
            specs.append(f"--perms\0{'0755'}\0--dir\0{Path(*parts[:depth])}")
        specs.append(f"--ro-bind\0{prefix}\0{prefix}")
    return tuple(specs)


def detect(force: str | None = None) -> Isolation:
    """Pick the strongest mode this machine offers (`force` names one, for tests)."""
    python = _python()
    bwrap = shutil.which("bwrap")
    mode = force or ("rlimits" if bwrap is None else "namespaces" if os.geteuid() == 0 else "userns")
    if mode == "rlimits":
        reason = "bwrap not found on PATH" if bwrap is None else "forced"
        return Isolation("rlimits", None, python, NO_NAMESPACES_WARNING, reason)
    return Isolation(mode, bwrap, python, mounts=_system_mounts(python))


def describe_isolation(force: str | None = None) -> dict:
    """The isolation a sandbox started now would get, found without starting one: its mode
    (``namespaces``, ``userns`` or ``rlimits``), whether that mode is weak (no namespaces:
    candidate code could read what this user can, a benchmark's hidden tests included), and
    why. A sandbox whose bwrap is refused at start falls back to ``rlimits``; its own
    ``Sandbox.isolation`` says what it ended up with."""
    isolation = detect(force)
    return {**isolation.describe(None), "weak": not isolation.in_namespace,
            "reason": isolation.reason}


def fallback(isolation: Isolation, reason: str) -> Isolation:
    return Isolation("rlimits", None, isolation.python, NO_NAMESPACES_WARNING, reason)
