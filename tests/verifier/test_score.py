"""The score S_F and its weights: ordering of typical verdicts, config round trip, bad configs."""

import json

import pytest

from flowmend.errors import UserError
from flowmend.verifier import CheckOutcome, Cost, Feedback, ScoreWeights, SyntaxProblem, score


def _fb(passed: int, failed: int, **kw) -> Feedback:
    checks = tuple(CheckOutcome(f"assert f({i}) == {i}", "passed") for i in range(passed)) + tuple(
        CheckOutcome(f"assert f(-{i}) == 0", "failed", "AssertionError", "got 1") for i in range(failed)
    )
    return Feedback(task_id="t", code="def f(x):\n    return x", compiled=True, checks=checks, **kw)


def test_the_formula_with_explicit_weights():
    w = ScoreWeights(alpha=2.0, beta=0.5, lam=0.001, nu=0.25, mu=0.1)
    fb = _fb(
        3,
        1,
        runtime_error="TypeError",
        violations=("x",),
        cost=Cost(calls=2, prompt_tokens=300, completion_tokens=200, units=500.0),
        self_checks=(CheckOutcome("assert f(0) == 0", "passed"), CheckOutcome("assert f(1) == 0", "failed")),
    )
    assert score(fb, w) == pytest.approx(0.75 - 0.5 - 0.5 - 0.25 + 0.05)
    broken = Feedback(task_id="t", code="def f(:", compiled=False, syntax_error=SyntaxProblem("invalid syntax", 1, 7))
    assert score(broken, w) == pytest.approx(-2.0)


def test_default_weights_rank_typical_verdicts():
    all_pass = _fb(3, 0)
    all_pass_expensive = _fb(3, 0, cost=Cost(units=5000.0))
    most_pass = _fb(2, 1)
    crash = _fb(0, 0, runtime_error="NameError")
    broken = Feedback(task_id="t", code="def f(:", compiled=False, syntax_error=SyntaxProblem("invalid syntax", 1))
    ranked = sorted(
        [broken, crash, most_pass, all_pass_expensive, all_pass], key=lambda f: score(f, ScoreWeights()), reverse=True
    )
    assert ranked == [all_pass, all_pass_expensive, most_pass, crash, broken]


def test_no_checks_means_clean_code_scores_one():
    assert score(_fb(0, 0)) == 1.0
    assert score(_fb(0, 0, violations=("the entry point `f` is not defined",))) < 0.0 + 1e-9


def test_weights_round_trip_through_a_config_file(tmp_path):
    w = ScoreWeights(alpha=0.7, beta=0.2, lam=0.0, nu=1.0, mu=0.0)
    path = tmp_path / "weights.json"
    path.write_text(json.dumps(w.to_dict()))
    assert ScoreWeights.from_dict(json.loads(path.read_text())) == w
    assert ScoreWeights.from_dict({"beta": 0.1}) == ScoreWeights(beta=0.1)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"gamma": 1.0}, "unknown score weight(s) 'gamma'; known: alpha, beta, lam, nu, mu"),
        ({"alpha": -1}, "weight alpha must be finite and >= 0, got -1"),
        ({"lam": "high"}, "weight lam must be a number, got 'high'"),
        ({"beta": True}, "weight beta must be a number, got True"),
        ({"nu": float("inf")}, "weight nu must be finite and >= 0, got inf"),
        ([1, 2], "score weights must be a mapping, got list"),
    ],
)
def test_bad_weights_are_a_one_line_user_error(data, message):
    with pytest.raises(UserError) as err:
        ScoreWeights.from_dict(data, where="weights.json")
    assert str(err.value) == f"weights.json: {message}"
