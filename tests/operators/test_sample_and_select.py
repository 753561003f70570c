"""`sample-and-select`: what it does beyond its own examples (its edits, and how they run)."""

import pytest

from flowmend.verifier.runtime_helpers import BudgetExhausted
from tests.operators.scripted import BROKEN, GOOD, Script, WRONG, apply, run


def test_sample_and_select_keeps_the_first_passing_sample():
    llm = Script(WRONG, GOOD, BROKEN)
    assert run(apply("sample-and-select", {"n": 3, "temperature": 0.9}), llm) == GOOD
    assert [p[1] for p in llm.prompts] == [{"temperature": 0.9}] * 3
    assert run(apply("sample-and-select", {"n": 2}), Script(WRONG, BROKEN)) == WRONG


def test_a_budget_stop_selects_among_the_samples_drawn_so_far():
    source = apply("sample-and-select", {"n": 4})
    assert run(source, Script(WRONG, GOOD, BudgetExhausted("tokens"))) == GOOD
    assert run(source, Script(WRONG, BudgetExhausted("calls"))) == WRONG
    with pytest.raises(BudgetExhausted):  # no sample at all: nothing to select
        run(source, Script(BudgetExhausted("tokens")))
