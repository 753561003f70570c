"""`reorder-steps`: what it does beyond its own examples (its edits, and how they run)."""

from flowmend.engine.testing import assert_not_applicable, dedent, run_operator


def test_reorder_refuses_steps_writing_the_same_variable():
    assert_not_applicable("reorder-steps", """
    def solve(task):
        code = llm(task.prompt)
        code = llm(task.prompt)
        return code
    """, None, {})


def test_reorder_twice_restores_the_source():
    before = dedent("""
    def solve(task):
        a = llm("A")  # first
        b = llm("B")
        return a + b
    """)
    once = run_operator("reorder-steps", before, {"step": "a", "with": "b"}, {})
    back = run_operator("reorder-steps", once.source, {"step": "b", "with": "a"}, {})
    assert back.source == before
