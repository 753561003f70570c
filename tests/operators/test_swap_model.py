"""`swap-model`: what it does beyond its own examples (its edits, and how they run)."""

from flowmend.engine import default_library
from flowmend.engine._workflow import parse_workflow
from flowmend.engine.testing import dedent


def test_swap_model_presets_offer_the_other_models_of_the_workflow():
    wf = parse_workflow(dedent("""
    def solve(task):
        plan = llm(task.prompt, model="big")
        code = llm(plan, model="small")
        return code
    """))
    op = default_library().get("swap-model")()
    assert [a.model for a in op.presets(wf, {"step": "code"})] == ["big"]
