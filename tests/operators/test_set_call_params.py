"""`set-call-params`: what it does beyond its own examples (its edits, and how they run)."""

from flowmend.engine import default_library
from flowmend.engine._workflow import parse_workflow
from flowmend.engine.testing import assert_operator


def test_set_call_params_replaces_in_place():
    assert_operator("set-call-params", """
    def solve(task):
        return llm(task.prompt, temperature=0.0, max_tokens=64)
    """, None, {"temperature": 1.5, "n": 2}, """
    def solve(task):
        return llm(task.prompt, temperature=1.5, max_tokens=64, n=2)
    """)


def test_set_call_params_presets_skip_what_the_call_has():
    wf = parse_workflow('def solve(task):\n    return llm(task.prompt, temperature=0.0)\n')
    presets = default_library().get("set-call-params")().presets(wf, {"step": "step1"})
    assert all(p.temperature != 0.0 for p in presets) and len(presets) == 3
