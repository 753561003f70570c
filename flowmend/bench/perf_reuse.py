"""What reusing greedy answers saved in a bench run that ran a method with and without it.

    python -m flowmend.bench.perf_reuse RUN_DIR WITH_METHOD WITHOUT_METHOD

Run the same method twice in one bench run, the second from a method file with
``"reuse_greedy": false`` (docs/loop.md), then compare them here over the tasks both finished:
pass@1, tokens and calls per task, and the share of the reusing method's calls that reuse made
unnecessary (reused / (sent + reused)).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from flowmend.bench._store import read_results


def summarise(records: list[dict], with_reuse: str, without: str) -> dict[str, Any]:
    """Both methods' figures over the tasks both of them have a record for."""
    by_method: dict[str, dict[str, dict]] = {with_reuse: {}, without: {}}
    for r in records:
        if r["method"] in by_method:
            by_method[r["method"]][r["task_id"]] = r
    tasks = sorted(by_method[with_reuse].keys() & by_method[without].keys())
    out: dict[str, Any] = {"tasks": len(tasks)}
    for name, rows in by_method.items():
        picked = [rows[t] for t in tasks]
        n = len(picked) or 1
        sent = sum(int(r.get("calls") or 0) for r in picked)
        reused = sum(int(r.get("reused_calls") or 0) for r in picked)
        out[name] = {
            "passed": sum(bool(r.get("passed")) for r in picked),
            "tokens_per_task": sum(int(r.get("tokens") or 0) for r in picked) / n,
            "calls_per_task": sent / n,
            "reused_calls_per_task": reused / n,
            "reused_share": reused / (sent + reused) if sent + reused else 0.0,
            "iterations_per_task": sum(int(r.get("iterations") or 0) for r in picked) / n,
        }
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    run_dir, with_reuse, without = argv
    print(json.dumps(summarise(read_results(Path(run_dir)), with_reuse, without), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
