"""gamma (verifier alignment) and kappa (proposal quality): hand-computed cases and properties."""

import math

from hypothesis import given
from hypothesis import strategies as st

from flowmend.verifier import Estimate, Iteration, Scored, gamma, kappa, score_ties


def test_gamma_by_hand():
    a, b, c, d = Scored(1.0, 1.0), Scored(0.0, 0.0), Scored(1.0, 0.5), Scored(0.5, 1.0)
    # ab agree, ac score tie (sign 0 is not sign +1: no agreement), ad skipped (U tie),
    # bc agree, bd agree, cd disagree.
    assert gamma([a, b, c, d]) == Estimate(value=3 / 5 - 0.5, n=5)
    assert score_ties([a, b, c, d]) == Estimate(value=1 / 5, n=5)


def test_a_verifier_that_ties_everything_is_below_chance_by_its_tie_rate():
    flat = [Scored(0.0, 0.0), Scored(0.0, 1.0), Scored(0.0, 0.5)]
    assert gamma(flat) == Estimate(-0.5, 3)
    assert score_ties(flat) == Estimate(1.0, 3)


def test_gamma_compares_only_within_a_group_and_accepts_mappings():
    records = [
        {"score": 1.0, "utility": 1.0, "group": "t1"},
        {"score": 0.0, "utility": 0.0, "group": "t1"},
        {"score": 0.0, "utility": 1.0, "group": "t2"},
        {"score": 1.0, "utility": 0.0, "group": "t2"},
        {"score": 5.0, "utility": 0.0, "group": "t3"},
    ]
    assert gamma(records) == Estimate(0.0, 2)


def test_empty_samples_are_nan_with_n_zero():
    g = gamma([Scored(1.0, 1.0), Scored(0.0, 1.0)])
    assert g.n == 0 and math.isnan(g.value)
    assert g.to_json() == {"value": None, "n": 0}
    k = kappa([], delta=0.1)
    assert k.n == 0 and math.isnan(k.value)


def test_kappa_by_hand():
    iterations = [
        Iteration(current=0.5, proposals=(0.4, 0.75)),  # 0.75 >= 0.5 + 0.25: hit
        Iteration(current=0.5, proposals=(0.7,)),  # miss
        {"current": 0.0, "proposals": []},  # every patch invalid: miss
        {"current": 0.0, "proposals": [0.25, 0.25]},  # hit (>=)
    ]
    assert kappa(iterations, delta=0.25) == Estimate(0.5, 4)
    assert kappa(iterations, delta=0.0).value == 0.75


scores = st.floats(-2, 2, allow_nan=False)
utilities = st.sampled_from([0.0, 0.25, 0.5, 1.0])


@given(st.lists(st.tuples(scores, utilities), max_size=12))
def test_gamma_is_bounded_and_flips_sign_with_the_verifier(pairs):
    cands = [Scored(s, u) for s, u in pairs]
    g = gamma(cands)
    flipped = gamma([Scored(-c.score, c.utility) for c in cands])
    ties = score_ties(cands)
    assert flipped.n == g.n == ties.n
    if g.n:
        assert -0.5 <= g.value <= 0.5
        # Every pair agrees one way or the other, or ties: neither way.
        assert math.isclose(flipped.value, -g.value - ties.value, abs_tol=1e-12)


@given(st.lists(utilities, min_size=1, max_size=12))
def test_an_oracle_verifier_has_gamma_one_half(us):
    g = gamma([Scored(u, u) for u in us])
    assert g.n == 0 or g.value == 0.5


@given(st.lists(st.tuples(utilities, st.lists(utilities, max_size=4)), max_size=10), st.floats(0, 1))
def test_kappa_is_a_proportion_that_falls_as_delta_grows(iterations, delta):
    its = [Iteration(c, tuple(p)) for c, p in iterations]
    k, k_more = kappa(its, delta), kappa(its, delta + 0.25)
    assert k.n == len(its)
    if its:
        assert 0.0 <= k_more.value <= k.value <= 1.0
