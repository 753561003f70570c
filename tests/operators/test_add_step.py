"""`add-step`: what it does beyond its own examples (its edits, and how they run)."""

from flowmend.engine._operator import Reason
from flowmend.engine.testing import assert_not_applicable, assert_operator
from tests.operators.scripted import GOOD, Script, apply, run


def test_add_step_threads_the_plan_into_the_next_prompt():
    llm = Script("1. add them", GOOD)
    assert run(apply("add-step", {"purpose": "plan", "position": "before"}), llm) == GOOD
    plan_prompt, code_prompt = llm.prompts[0][0], llm.prompts[1][0]
    assert plan_prompt.endswith("Write add(a, b).") and "plan" in plan_prompt
    assert code_prompt == "Write add(a, b).\n\nPlan:\n1. add them"


def test_add_step_after_reaches_a_consumer_in_a_later_block():
    assert_operator("add-step", """
    def solve(task):
        draft = llm(task.prompt)
        if draft:
            code = llm("Fix:\\n" + draft)
        return code
    """, {"step": "draft"}, {"purpose": "critique", "position": "after"}, """
    def solve(task):
        draft = llm(task.prompt)
        critique = llm(f"Review the answer below: list concrete mistakes and missed cases. Do not rewrite it.\\n\\n{draft}")
        if draft:
            code = llm("Fix:\\n" + draft + f"\\n\\nReview:\\n{critique}")
        return code
    """)


def test_add_step_after_refuses_when_the_new_variable_might_be_unbound():
    refused = assert_not_applicable("add-step", """
    def solve(task):
        if task.prompt:
            draft = llm(task.prompt)
        else:
            draft = "x"
        return llm("Fix:\\n" + draft)
    """, {"step": "draft"}, {"purpose": "critique", "position": "after"})
    assert refused.reason is Reason.DATA_FLOW
