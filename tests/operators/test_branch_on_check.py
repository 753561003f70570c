"""`branch-on-check`: what it does beyond its own examples (its edits, and how they run)."""

from tests.operators.scripted import BROKEN, GOOD, Script, WRONG, apply, run


def test_branch_on_check_routes_by_kind():
    source = apply("branch-on-check", {"syntax_error": "SYNTAX", "runtime_error": "RUNTIME",
                                       "failing_check": "LOGIC", "no_code": "NOCODE"})
    for first, word in [(BROKEN, "SYNTAX"), (WRONG, "LOGIC"), ("def add(a, b):\n    return x\n", "RUNTIME"),
                        ("I cannot.", "NOCODE")]:
        llm = Script(first, GOOD)
        assert run(source, llm) == GOOD
        assert llm.prompts[1][0].startswith(word)
    ok = Script(GOOD)
    assert run(source, ok) == GOOD and len(ok.prompts) == 1
