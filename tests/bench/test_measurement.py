"""γ, κ, ties, budget-cut iterations, regret and spend on a hand-built set of candidates whose
answers are worked out by hand, and `flowmend report` recomputing them from the files alone."""

import json

import pytest

from flowmend.bench import metrics
from flowmend.bench._store import RESULTS, RUN
from flowmend.cli import main


def cand(iteration, index, utility, score, *, selected=False, hidden=None):
    return {"iteration": iteration, "index": index, "utility": utility, "score": score,
            "hidden": utility if hidden is None else hidden, "selected": selected,
            "output": f"def f(): return {iteration}{index}", "source_sha256": f"{iteration}{index}",
            "passed_visible": False, "patch": None, "tokens": 100}


def record(method, task, candidates, rounds=(), *, final_utility, tokens):
    return {"task_id": task, "method": method, "passed": False, "hidden": final_utility,
            "utility": final_utility, "tokens": tokens, "calls": 4, "candidates": candidates,
            "rounds": list(rounds), "proposals": {}, "status": "budget_exhausted"}


def rounds(*cut):
    return [{"iteration": k, "budget_cut": c, "candidates": 0} for k, c in enumerate(cut, 1)]


# flowmend on T/1: iteration 1 proposes an improvement (U 0 → 0.5) but scores it below a
# useless sibling; iteration 2's proposals all failed to apply; the budget refused 3's call.
LOOP = record("flowmend", "T/1", [
    cand(0, 0, 0.0, 0.1, selected=True),
    cand(1, 1, 0.5, 0.6, selected=True),
    cand(1, 2, 0.0, 0.7),
], rounds(False, False, True), final_utility=0.5, tokens=1000)
# flowmend on T/2: one iteration, the best candidate (U 1) scored in a tie with a worse one,
# and the loop kept the seed (U 0.25): regret 0.75.
TIED = record("flowmend", "T/2", [
    cand(0, 0, 0.25, 0.5, selected=True),
    cand(1, 1, 1.0, 0.2),
    cand(1, 2, 0.5, 0.2),
], rounds(False), final_utility=0.25, tokens=1000)
# Random choice on the same tasks: nothing improves.
RANDOM = [
    record("flowmend-random", "T/1", [cand(0, 0, 0.0, 0.1, selected=True), cand(1, 1, 0.0, 0.0)],
           rounds(False), final_utility=0.0, tokens=600),
    record("flowmend-random", "T/2", [cand(0, 0, 0.25, 0.5, selected=True),
                                      cand(1, 1, 0.25, 0.1)],
           rounds(False), final_utility=0.25, tokens=600),
]
# Best-of-n: three samples in iteration 0, selected by score (the right one).
BEST_OF_N = record("b3", "T/1", [cand(0, 0, 0.0, 0.1), cand(0, 1, 1.0, 0.9, selected=True),
                                 cand(0, 2, 0.5, 0.5)], final_utility=1.0, tokens=1100)


def test_kappa_counts_every_iteration_with_budget_and_tallies_the_cut_ones_apart():
    assert metrics.kappa_rounds(LOOP) == ([(1, 0.0, (0.5, 0.0)), (2, 0.5, ())], 1)
    # T/1: 1 hit of 2 (the empty iteration 2 is a miss); T/2: 1 hit of 1.
    assert metrics.kappa_of([LOOP, TIED]) == metrics.Figure(2 / 3, 3)
    assert metrics.budget_cut_iterations([LOOP, TIED]) == 1
    # Without the rounds the empty iteration 2 would vanish and κ would read 2/2.
    assert metrics.kappa_of([{**LOOP, "rounds": []}, TIED]) == metrics.Figure(1.0, 2)


def test_gamma_per_iteration_pooled_and_ties():
    # Per iteration: T/1 iteration 1 has one pair, scored the wrong way round; T/2 iteration 1
    # has one pair, a tie in S (a disagreement as written); b3's three samples agree on all 3.
    assert metrics.gamma_of([LOOP]) == metrics.Figure(-0.5, 1)
    assert metrics.gamma_of([LOOP, TIED]) == metrics.Figure(-0.5, 2)
    assert metrics.score_ties_of([LOOP, TIED]) == metrics.Figure(0.5, 2)
    assert metrics.gamma_of([BEST_OF_N]) == metrics.Figure(0.5, 3)
    # Pooled over T/1's run: the seed against (1, 1) agrees, against (1, 2) U ties (no pair),
    # and (1, 1) against (1, 2) disagrees: 1 of 2.
    assert metrics.gamma_of([LOOP], per_iteration=False) == metrics.Figure(0.0, 2)


def test_utility_leaves_out_the_visible_test_where_the_record_has_it():
    only_visible = cand(1, 1, 0.0, 0.9, hidden=1 / 3)
    seed = cand(0, 0, 0.0, 0.1, selected=True)
    run = record("flowmend", "T/3", [seed, only_visible], rounds(False), final_utility=0.0,
                 tokens=10)
    assert metrics.kappa_of([run]) == metrics.Figure(0.0, 1)  # 1/3 on all tests is not progress
    assert metrics.gamma_of([run], per_iteration=False) == metrics.Figure(None, 0)


def test_regret_and_spend():
    assert metrics.regret(LOOP) == 0.0 and metrics.regret(TIED) == 0.75
    assert metrics.regret({"candidates": [], "utility": 0.0}) is None
    assert metrics.spend_ratio(RANDOM, [LOOP, TIED]) == metrics.Figure(0.6, 2)
    sums = {s.method: s for s in metrics.summarize([LOOP, TIED, *RANDOM, BEST_OF_N],
                                                   baselines=["b3"], resamples=200)}
    assert sums["flowmend-random"].spend_ratio == metrics.Figure(0.6, 2)
    assert sums["flowmend-random"].spend_matched is False
    assert sums["b3"].spend_ratio == metrics.Figure(1.1, 1) and sums["b3"].spend_matched
    assert sums["flowmend"].regret == metrics.Figure(0.375, 2)
    assert sums["flowmend"].kappa_budget_cut == 1


def test_kappa_against_random_is_paired_over_tasks():
    d = metrics.kappa_paired([LOOP, TIED], RANDOM, resamples=500)
    # T/1: 1/2 − 0, T/2: 1 − 0.
    assert d.n == 2 and d.value == pytest.approx(0.75)
    assert d.lo == pytest.approx(0.5) and d.hi == pytest.approx(1.0)


def test_flowmend_report_recomputes_them_from_the_run_folder_alone(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    methods = [{"name": n, "baseline": n == "b3", "config": {"iterations": 4}}
               for n in ("b3", "flowmend", "flowmend-random")]
    (out / RUN).write_text(json.dumps({"schema": "flowmend.bench-run/1", "identity": {
        "suite": "mbpp", "split": "test", "methods": methods, "seed": 0,
        "budget": {"calls": 8, "tokens": 4000}, "isolation": "namespaces"},
        "isolation": {"mode": "namespaces", "namespaces": ["pid", "net"], "weak": False}}))
    rows = [BEST_OF_N, LOOP, TIED, *RANDOM]
    (out / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(out), "--resamples", "500"]) == 0
    text = (out / "REPORT.md").read_text()
    flowmend_row = next(line for line in text.splitlines() if line.startswith("| flowmend |"))
    cells = [c.strip() for c in flowmend_row.strip("|").split("|")]
    from flowmend.bench.report import COLUMNS

    row = dict(zip(COLUMNS, cells))
    assert row["γ"] == "-0.500 (n=2)" and row["γ pooled"] == "-0.300 (n=5)"
    assert row["S ties"] == "50.0% (n=2)"
    assert row["κ"] == "0.667 (n=3)" and row["κ budget-cut"] == "1"
    assert row["regret"] == "0.375 (n=2)"
    assert "`flowmend-random` spent 60% of `flowmend`'s tokens per task (n=2 tasks): **not within** ±15%." in text
    assert "`b3` spent 110% of `flowmend`'s tokens per task (n=1 tasks): within ±15%." in text
    assert "paired per-task difference +0.750 [+0.500, +1.000] (n=2 tasks" in text
    assert "sandbox isolation: `namespaces`" in text
