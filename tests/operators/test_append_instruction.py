"""`append-instruction`: what it does beyond its own examples (its edits, and how they run)."""

from flowmend.engine.testing import assert_operator


def test_append_keeps_triple_quotes_and_parenthesises_low_precedence():
    assert_operator("append-instruction", '''
    def solve(task):
        return llm("""Solve it.""")
    ''', None, {"sentence": 'Use "quotes".'}, '''
    def solve(task):
        return llm("""Solve it.
    Use \\"quotes\\".""")
    ''')
    assert_operator("append-instruction", """
    def solve(task):
        return llm(task.prompt if task.prompt else "?")
    """, None, {"sentence": "Be brief."}, """
    def solve(task):
        return llm((task.prompt if task.prompt else "?") + "\\nBe brief.")
    """)
