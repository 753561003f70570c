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
    """Host pids of our own sandboxes' children: a sandbox uid, and this process an ancestor.

    Orphans of a dead namespace would be re-parented outside our tree, but a pid namespace
    dies whole with its init, so a descendant scan sees every survivor that can exist.
    """
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as handle:
                for line in handle:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) >= FIRST_UID and descends_from_us(int(name)):
                            found.append(int(name))
                        break
        except OSError:
            continue
    return found


def descends_from_us(pid: int) -> bool:
    me = os.getpid()
    for _ in range(64):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == me:
            return True
        if pid <= 1:
            return False
    return False


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
