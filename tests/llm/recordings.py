"""Helpers over recorded replay files shared by the tests that replay them."""

from __future__ import annotations

import json
from pathlib import Path


def one_answer_per_request(path: Path, out: Path) -> Path:
    """The recording at `path` with each request's first answer only, written to `out`.

    vLLM may answer one greedy request differently in different batches, and a replay hands a
    request's recordings out in arrival order, which changes with the concurrency, a resume or
    the number of requests a run sends (reuse): with one answer each, such runs compare exactly.
    """
    seen, lines = set(), []
    for line in Path(path).read_text().splitlines():
        key = json.loads(line)["key"]
        if key not in seen:
            seen.add(key)
            lines.append(line)
    out.write_text("\n".join(lines) + "\n")
    return out
