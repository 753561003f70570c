"""`sample-and-select`: what it does beyond its own examples (its edits, and how they run)."""

from tests.operators.scripted import BROKEN, GOOD, Script, WRONG, apply, run


def test_sample_and_select_keeps_the_first_passing_sample():
    llm = Script(WRONG, GOOD, BROKEN)
    assert run(apply("sample-and-select", {"n": 3, "temperature": 0.9}), llm) == GOOD
    assert [p[1] for p in llm.prompts] == [{"temperature": 0.9}] * 3
    assert run(apply("sample-and-select", {"n": 2}), Script(WRONG, BROKEN)) == WRONG
