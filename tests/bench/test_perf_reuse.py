"""The reuse comparison of a bench run, on records whose figures are known."""

from flowmend.bench.perf_reuse import summarise


def record(task, method, *, calls, reused, tokens, passed=False, iterations=1):
    return {"task_id": task, "method": method, "calls": calls, "reused_calls": reused,
            "tokens": tokens, "passed": passed, "iterations": iterations}


def test_figures_are_over_the_tasks_both_methods_finished():
    records = [
        record("t1", "fm", calls=4, reused=2, tokens=1000, passed=True),
        record("t1", "fm-plain", calls=6, reused=0, tokens=1600),
        record("t2", "fm", calls=5, reused=1, tokens=1500, iterations=3),
        record("t2", "fm-plain", calls=6, reused=0, tokens=1800, passed=True),
        record("t3", "fm", calls=9, reused=9, tokens=9999),  # no counterpart: left out
        record("t1", "b0", calls=1, reused=0, tokens=300),
    ]
    out = summarise(records, "fm", "fm-plain")
    assert out["tasks"] == 2
    assert out["fm"] == {"passed": 1, "tokens_per_task": 1250.0, "calls_per_task": 4.5,
                         "reused_calls_per_task": 1.5, "reused_share": 3 / 12,
                         "iterations_per_task": 2.0}
    assert out["fm-plain"]["reused_share"] == 0.0 and out["fm-plain"]["tokens_per_task"] == 1700.0
