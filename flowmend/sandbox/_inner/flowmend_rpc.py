"""Request/response calls from sandboxed code to a handler in the trusted parent.

`call(method, payload)` sends one JSON line to the parent and blocks until its answer arrives.
Calls from several threads may be in flight at once; each answer is matched by id. A handler
that raised in the parent surfaces here as `RPCError`.
"""

from __future__ import annotations

import json
import os
import threading

import flowmend_wire as wire

__all__ = ["RPCError", "call"]


class RPCError(Exception):
    """The parent's handler failed, refused the request, or the channel is closed."""


_state: dict = {
    "out": None, "in": None, "limit": 1 << 20, "next": 0, "answers": {}, "reader": False,
    "buffer": bytearray(),
}
_lock = threading.Lock()
_answered = threading.Condition(_lock)


def _connect(out_fd: int, in_fd: int, limit: int) -> None:
    _state.update({"out": out_fd, "in": in_fd, "limit": limit, "next": 0, "answers": {},
                   "buffer": bytearray()})


def call(method: str, payload=None):
    """Send `payload` (JSON-serialisable) to the parent's handler for `method`; return its
    answer."""
    if _state["out"] is None:
        raise RPCError("no RPC channel: this code is not running in a flowmend sandbox")
    if not isinstance(method, str):
        raise TypeError("method must be a str")
    with _lock:
        ident = _state["next"]
        _state["next"] += 1
    line = wire.encode({"id": ident, "method": method, "payload": payload})
    if len(line) > _state["limit"]:
        raise RPCError(f"request of {len(line)} bytes exceeds the {_state['limit']}-byte limit")
    with _lock:
        view = memoryview(line)
        while view:
            try:
                written = os.write(_state["out"], view)
            except OSError as err:
                raise RPCError(f"RPC channel closed: {err}") from None
            view = view[written:]
    answer = _await(ident)
    if answer.get("ok"):
        return answer.get("result")
    raise RPCError(answer.get("error", "RPC failed"))


def _await(ident: int) -> dict:
    """Wait for the answer with this id; one waiting thread at a time reads the channel."""
    with _answered:
        while True:
            if ident in _state["answers"]:
                return _state["answers"].pop(ident)
            if not _state["reader"]:
                _state["reader"] = True
                break
            _answered.wait()
    try:
        while True:
            chunk = os.read(_state["in"], 1 << 16)
            if not chunk:
                raise RPCError("RPC channel closed by the parent")
            with _answered:
                _state["buffer"] += chunk
                while (line := wire.next_line(_state["buffer"])) is not None:
                    answer = json.loads(line)
                    _state["answers"][answer.get("id")] = answer
                _answered.notify_all()
                if ident in _state["answers"]:
                    return _state["answers"].pop(ident)
    finally:
        with _answered:
            _state["reader"] = False
            _answered.notify_all()
