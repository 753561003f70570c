"""`wrap-in-retry`: what it does beyond its own examples (its edits, and how they run)."""

from flowmend.engine._operator import Applied
from flowmend.engine.testing import run_operator
from flowmend.verifier.runtime_helpers import BudgetExhausted
from tests.operators.scripted import BROKEN, GOOD, Script, WRONG, apply, run


def test_wrap_in_retry_retries_until_verify_passes():
    llm = Script(WRONG, BROKEN, GOOD, "unused")
    assert run(apply("wrap-in-retry", {"max_attempts": 4, "until": "verify"}), llm) == GOOD
    assert len(llm.prompts) == 3


def test_wrap_in_retry_reraises_after_the_last_attempt():
    source = apply("wrap-in-retry", {"max_attempts": 2})
    assert run(source, Script(TimeoutError("slow"), GOOD)) == GOOD
    try:
        run(source, Script(TimeoutError("1"), TimeoutError("2")))
    except TimeoutError as err:
        assert str(err) == "2"
    else:
        raise AssertionError("the last failure should propagate")


def test_wrap_in_retry_until_compiles_skips_broken_code():
    llm = Script(BROKEN, WRONG)
    assert run(apply("wrap-in-retry", {"max_attempts": 3, "until": "compiles"}), llm) == WRONG


def test_wrap_in_retry_keeps_tabs_and_multiline_strings():
    before = 'def solve(task):\n\tcode = llm("""a\n  b""")\n\treturn code\n'
    result = run_operator("wrap-in-retry", before, {"step": "code"}, {"max_attempts": 2})
    assert isinstance(result, Applied)
    assert '\t\t\tcode = llm("""a\n  b""")\n' in result.source
    assert "\tfor attempt in range(2):\n" in result.source


def test_a_budget_stop_is_not_retried_and_keeps_the_last_attempt():
    until_verify = apply("wrap-in-retry", {"max_attempts": 4, "until": "verify"})
    llm = Script(WRONG, BudgetExhausted("tokens"), GOOD)
    assert run(until_verify, llm) == WRONG and len(llm.prompts) == 2
    for source in (until_verify, apply("wrap-in-retry", {"max_attempts": 3})):
        llm = Script(BudgetExhausted("calls"), GOOD)
        try:
            run(source, llm)
        except BudgetExhausted as err:  # the first attempt refused: no answer to keep
            assert err.limit == "calls" and len(llm.prompts) == 1
        else:
            raise AssertionError("a refused first attempt should propagate")
