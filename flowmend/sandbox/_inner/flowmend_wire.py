"""The wire between the parent and the sandbox: control tags, the length header, JSON lines.

Stdlib only, and imported on both sides of the trust boundary: inside the sandbox as a top-level
module (by the zygote and `flowmend_rpc`), in the parent as `flowmend.sandbox._inner.flowmend_wire`.
"""

from __future__ import annotations

import json
import struct

# Parent to zygote, over its control socket. A job is JOB, then HEADER (the payload's length),
# then the job as JSON; JOB carries the child's five descriptors. Any byte mid-run means KILL.
JOB = b"J"
KILL = b"K"
# Parent to mother zygote. SPAWN carries the socket the new zygote is to serve; KILL_ZYGOTE is
# followed by HEADER holding the zygote's pid as the mother sees it.
SPAWN = b"S"
KILL_ZYGOTE = b"X"
HEADER = struct.Struct("!Q")


def encode(message) -> bytes:
    """One JSON line: what zygotes report, RPC requests and RPC answers all travel as."""
    return json.dumps(message).encode() + b"\n"


def next_line(buf: bytearray) -> bytes | None:
    """Remove the first complete line from `buf` and return it without its newline (None when
    `buf` holds no complete line yet)."""
    end = buf.find(b"\n")
    if end < 0:
        return None
    line = bytes(buf[:end])
    del buf[:end + 1]
    return line
