"""The wire both ends share, and the rule that lets the parent share it: the code inside the
sandbox (`_inner/`) imports the standard library and its own siblings, never flowmend."""

from __future__ import annotations

import subprocess
import sys

from flowmend.sandbox._inner import flowmend_wire as wire
from flowmend.sandbox._isolation import INNER_DIR


def test_the_code_inside_runs_without_flowmend():
    # Isolated mode and no site-packages: flowmend cannot be imported from here, so any import
    # of it by an inner module would fail this, as it would fail inside the sandbox.
    script = (
        f"import sys; sys.path.insert(0, {str(INNER_DIR)!r})\n"
        "import zygote, flowmend_rpc, flowmend_wire\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'flowmend'))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], cwd="/",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


def test_the_parent_uses_the_same_file():
    assert wire.__file__ == str(INNER_DIR / "flowmend_wire.py")


def test_lines_come_out_whole_and_in_order():
    buf = bytearray()
    buf += wire.encode({"id": 1})[:5]
    assert wire.next_line(buf) is None
    buf += wire.encode({"id": 1})[5:] + wire.encode({"id": 2}) + b'{"id"'
    assert wire.next_line(buf) == b'{"id": 1}'
    assert wire.next_line(buf) == b'{"id": 2}'
    assert wire.next_line(buf) is None
    assert buf == bytearray(b'{"id"')
