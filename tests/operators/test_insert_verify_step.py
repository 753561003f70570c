"""`insert-verify-step`: what it does beyond its own examples (its edits, and how they run)."""

from flowmend.engine.testing import run_operator
from flowmend.verifier.runtime_helpers import BudgetExhausted
from tests.operators.scripted import GOOD, Script, WRONG, apply, run


def test_insert_verify_step_repairs_only_on_failure_with_the_feedback():
    source = apply("insert-verify-step", {})
    passing = Script(GOOD)
    assert run(source, passing) == GOOD and len(passing.prompts) == 1
    failing = Script(WRONG, GOOD)
    assert run(source, failing) == GOOD
    repair_prompt = failing.prompts[1][0]
    assert "failing_check" in repair_prompt and "add(1, 2) != 3" in repair_prompt and WRONG in repair_prompt


def test_insert_verify_step_uses_a_fresh_check_name():
    result = run_operator("insert-verify-step", """
    def solve(task, check):
        code = llm(task.prompt)
        return code
    """, {"step": "code"}, {})
    assert "check2 = verify(code)" in result.source


def test_a_repair_the_budget_refuses_keeps_the_unrepaired_answer():
    llm = Script(WRONG, BudgetExhausted("tokens"))
    assert run(apply("insert-verify-step", {}), llm) == WRONG and len(llm.prompts) == 2
