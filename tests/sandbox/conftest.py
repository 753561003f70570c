"""A shared sandbox for the sandbox tests, and a look at the host for survivors."""

from __future__ import annotations

import os

import pytest

from flowmend.sandbox import Sandbox
from flowmend.sandbox._isolation import FIRST_UID


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, max_inflight=8) as sb:
        yield sb


def sandbox_processes() -> list[int]:
    """Host pids of processes running as a sandbox child uid (namespaces mode)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as handle:
                for line in handle:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) >= FIRST_UID:
                            found.append(int(name))
                        break
        except OSError:
            continue
    return found


def describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            status = open(f"/proc/{pid}/status").read()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            out.append(f"{pid} state={fields.get('State','').strip()} ppid={fields.get('PPid','').strip()} "
                       f"uid={fields.get('Uid','').split()[0]} nspid={fields.get('NSpid','').strip()}")
        except OSError:
            out.append(f"{pid} gone")
    return out
