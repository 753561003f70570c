import numpy as np
import pytest

from flowmend.bench import metrics

SEED = '''def solve(task):
    # the code step
    code = llm("Write the function.\\n" + task.prompt)
    return extract_code(code)
'''


def test_patch_size_counts_changed_nodes_not_formatting():
    assert metrics.patch_size(SEED, SEED) == 0
    assert metrics.patch_size(SEED, SEED.replace("    ", "  ").replace("# the code step", "# x")) == 0
    # One string literal replaced: one node out, one in.
    assert metrics.patch_size(SEED, SEED.replace("Write the function.", "Write it.")) == 2
    retried = SEED.replace(
        '    code = llm("Write the function.\\n" + task.prompt)\n',
        '    for _ in range(3):\n        code = llm("Write the function.\\n" + task.prompt)\n'
        '        if verify(code):\n            break\n',
    )
    grown = metrics.patch_size(SEED, retried)
    assert grown > 10
    assert metrics.patch_size(retried, SEED) == grown
    assert metrics.patch_size(SEED, "def (") is None


def test_gamma_compares_candidates_of_one_run_only():
    """The records' candidates go to `flowmend.verifier.gamma`, grouped by (task, method)."""
    def cand(score, hidden):
        return {"score": score, "hidden": hidden}

    agree = _record("m", "T/1", True, [cand(1.0, 1.0), cand(0.0, 0.0)])
    disagree = _record("m", "T/2", True, [cand(1.0, 0.0), cand(0.0, 1.0)])
    tie_in_score = _record("m", "T/3", True, [cand(0.3, 1.0), cand(0.3, 0.0)])
    same_utility = _record("m", "T/4", True, [cand(1.0, 0.5), cand(0.0, 0.5)])
    unscored = _record("m", "T/5", True, [cand(None, 1.0), {"score": 0.0}])
    assert metrics.gamma_of([agree]) == metrics.Figure(0.5, 1)
    assert metrics.gamma_of([disagree]).value == -0.5
    # A tie in S has sign 0, not U's sign: as written, it does not agree.
    assert metrics.gamma_of([tie_in_score]).value == -0.5
    assert metrics.score_ties_of([tie_in_score]) == metrics.Figure(1.0, 1)
    assert metrics.gamma_of([same_utility, unscored]) == metrics.Figure(None, 0)
    # Across runs nothing is paired: 1 agreeing pair, 1 disagreeing, 1 tie.
    assert metrics.gamma_of([agree, disagree, tie_in_score]) == metrics.Figure(1 / 3 - 0.5, 3)


def _record(method, task, passed, candidates=(), **extra):
    return {"task_id": task, "method": method, "passed": passed, "candidates": list(candidates),
            **extra}


def test_kappa_counts_iterations_with_an_improving_proposal():
    cands = [
        {"iteration": 0, "index": 0, "hidden": 0.2, "score": 0.1, "selected": True},
        {"iteration": 1, "index": 1, "parent": 0, "hidden": 0.2, "score": 0.1},
        {"iteration": 1, "index": 2, "parent": 0, "hidden": 0.6, "score": 0.5, "selected": True},
        {"iteration": 2, "index": 1, "parent": 2, "hidden": 0.4, "score": 0.4},
        {"iteration": 3, "index": 1, "parent": 2, "hidden": 1.0, "score": 1.0, "selected": True},
    ]
    record = _record("flowmend", "T/1", True, cands)
    # iteration 1: 0.6 > 0.2; iteration 2: 0.4 < 0.6 (incumbent from iteration 1's selection);
    # iteration 3: nothing won in 2, so the incumbent is still 0.6, and 1.0 beats it.
    assert [u0 for _, u0, _ in metrics.kappa_iterations(record)] == [0.2, 0.6, 0.6]
    assert metrics.kappa_of([record]).value == pytest.approx(2 / 3)
    assert metrics.kappa_of([record]).n == 3
    by_iter = metrics.kappa_by_iteration([record])
    assert by_iter[1] == metrics.Figure(1.0, 1) and by_iter[2] == metrics.Figure(0.0, 1)
    assert by_iter[3] == metrics.Figure(1.0, 1)
    perfect = _record("flowmend", "T/2", True, [
        {"iteration": 0, "index": 0, "hidden": 1.0, "selected": True},
        {"iteration": 1, "index": 1, "hidden": 1.0}])
    assert metrics.kappa_iterations(perfect) == []
    assert metrics.kappa_of([perfect]) == metrics.Figure(None, 0)


def test_paired_bootstrap_is_seeded_and_covers_the_difference():
    rng = np.random.default_rng(1)
    a = (rng.random(200) < 0.6).astype(float)
    b = (rng.random(200) < 0.4).astype(float)
    one = metrics.paired_bootstrap(a, b, resamples=2000, seed=7)
    two = metrics.paired_bootstrap(a, b, resamples=2000, seed=7)
    assert one == two
    assert one.value == pytest.approx(a.mean() - b.mean())
    assert one.lo < one.value < one.hi and one.n == 200
    same = metrics.paired_bootstrap(a, a, resamples=500)
    assert (same.value, same.lo, same.hi) == (0.0, 0.0, 0.0)
    assert metrics.paired_bootstrap([], []) == metrics.Figure(None, 0)


def test_wilson_interval_is_sound_at_the_edges():
    zero = metrics.wilson(0, 30)
    assert zero.value == 0 and zero.lo == 0 and 0 < zero.hi < 0.15
    assert metrics.wilson(0, 0).value is None


def test_summarize_compares_against_the_best_baseline():
    budget = {"calls": 10, "tokens": 1000}
    records = []
    for i in range(40):
        task = f"T/{i}"
        records.append(_record("b0", task, i % 4 == 0, tokens=100, calls=1, budget=budget))
        records.append(_record("b3", task, i % 2 == 0, tokens=400, calls=4, budget=budget))
        records.append(_record("flowmend", task, i % 4 != 3, tokens=900, calls=6, budget=budget,
                               proposals={"tried": 8, "applied": 6}))
    records.append(_record("flowmend", "T/99", True, tokens=2000, calls=6, budget=budget))
    sums = {s.method: s for s in metrics.summarize(records, baselines=["b0", "b3"], resamples=2000)}
    assert sums["b3"].vs_best_baseline is None  # b3 is the best baseline
    assert metrics.best_baseline(list(sums.values())).method == "b3"
    fm = sums["flowmend"]
    assert fm.pass_at_1.n == 41 and fm.vs_best_baseline.n == 40  # paired on common tasks only
    assert fm.vs_best_baseline.value == pytest.approx(0.25)
    assert fm.vs_best_baseline.lo > 0
    assert sums["b0"].vs_best_baseline.value == pytest.approx(-0.25)
    # T/99 spent 2000 tokens of a 1000 budget: solved, but not within budget.
    assert fm.success_under_budget.value == pytest.approx(30 / 41)
    assert fm.applied_share == metrics.Figure(0.75, 320)
    assert sums["b0"].tokens_per_solved == metrics.Figure(100.0, 10)
