"""`remove-step`: what it does beyond its own examples (its edits, and how they run)."""

from flowmend.engine import default_library
from flowmend.engine._workflow import parse_workflow
from flowmend.engine.testing import assert_operator, dedent


def test_remove_step_follows_the_data_flow():
    before = """
    def solve(task):
        plan = llm(task.prompt)
        llm("log this")
        code = llm(f"{plan}")
        return code
    """
    wf = parse_workflow(dedent(before))
    op = default_library().get("remove-step")()
    # plan is read by code's prompt; code is returned; the bare call's value is unused.
    assert op.sites(wf) == [{"step": "step2"}]
    assert_operator("remove-step", before, {"step": "step2"}, {}, """
    def solve(task):
        plan = llm(task.prompt)
        code = llm(f"{plan}")
        return code
    """)


def test_remove_step_allows_a_rebinding_of_a_parameter():
    assert_operator("remove-step", """
    def solve(task, code):
        code = llm(f"Improve {code}")
        return code
    """, {"step": "code"}, {}, """
    def solve(task, code):
        return code
    """)
