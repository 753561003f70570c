"""Focused cases per operator, beyond the examples each class carries."""

import pytest

from flowmend.engine import default_library
from flowmend.engine._operator import Applied, NotApplicable, Reason
from flowmend.engine._workflow import parse_workflow
from flowmend.engine.testing import assert_not_applicable, assert_operator, dedent, run_operator


def test_rewrite_prompt_may_read_parameters_but_not_later_variables():
    before = """
    def solve(task, hint):
        code = llm(f"Solve {task.prompt}")
        notes = "later"
        return code
    """
    assert_operator("rewrite-prompt-literal", before, {"step": "code"},
                    {"text": "Solve {task.prompt} using {hint}"}, """
    def solve(task, hint):
        code = llm(f"Solve {task.prompt} using {hint}")
        notes = "later"
        return code
    """)
    refused = assert_not_applicable("rewrite-prompt-literal", before, {"step": "code"},
                                    {"text": "Solve {task.prompt} with {notes}"})
    assert refused.reason is Reason.PLACEHOLDER and "notes" in refused.detail


def test_rewrite_prompt_keyword_form_and_escaping():
    assert_operator("rewrite-prompt-literal", """
    def solve(task):
        return llm(prompt="Old")
    """, None, {"text": 'Say "hi" with {{braces}} and a \\ backslash\nthen stop'}, """
    def solve(task):
        return llm(prompt="Say \\"hi\\" with {braces} and a \\\\ backslash\\nthen stop")
    """)


def test_rewrite_prompt_is_idempotent():
    before = 'def solve(task):\n    code = llm(f"Do {task.prompt}")\n    return code\n'
    args = {"text": "Now {task.prompt}!"}
    once = run_operator("rewrite-prompt-literal", before, {"step": "code"}, args)
    twice = run_operator("rewrite-prompt-literal", once.source, {"step": "code"}, args)
    assert once.source == twice.source


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


def test_set_call_params_replaces_in_place():
    assert_operator("set-call-params", """
    def solve(task):
        return llm(task.prompt, temperature=0.0, max_tokens=64)
    """, None, {"temperature": 1.5, "n": 2}, """
    def solve(task):
        return llm(task.prompt, temperature=1.5, max_tokens=64, n=2)
    """)


def test_swap_model_presets_offer_the_other_models_of_the_workflow():
    wf = parse_workflow(dedent("""
    def solve(task):
        plan = llm(task.prompt, model="big")
        code = llm(plan, model="small")
        return code
    """))
    op = default_library().get("swap-model")()
    assert [a.model for a in op.presets(wf, {"step": "code"})] == ["big"]


def test_wrap_in_retry_keeps_tabs_and_multiline_strings():
    before = 'def solve(task):\n\tcode = llm("""a\n  b""")\n\treturn code\n'
    result = run_operator("wrap-in-retry", before, {"step": "code"}, {"max_attempts": 2})
    assert isinstance(result, Applied)
    assert '\t\t\tcode = llm("""a\n  b""")\n' in result.source
    assert "\tfor attempt in range(2):\n" in result.source


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


METHOD_FLOW = """
class Flow:
    def run(self, task):
        code = self.generate(task.prompt)
        return code
"""


@pytest.mark.parametrize("operator", ["insert-verify-step", "wrap-in-retry", "sample-and-select",
                                      "branch-on-check", "add-step", "set-call-params"])
def test_structure_operators_work_on_methods(operator):
    result = run_operator(operator, METHOD_FLOW, {"step": "code"},
                          {"temperature": 0.3} if operator == "set-call-params" else {},
                          entry="Flow.run", step_callees=("self.generate",))
    assert isinstance(result, Applied), result
    compile(result.source, "<flow>", "exec")
    expected_calls = {"insert-verify-step": 2, "branch-on-check": 5, "add-step": 2}
    assert result.source.count("self.generate(") == expected_calls.get(operator, 1)


def test_insert_verify_step_uses_a_fresh_check_name():
    result = run_operator("insert-verify-step", """
    def solve(task, check):
        code = llm(task.prompt)
        return code
    """, {"step": "code"}, {})
    assert "check2 = verify(code)" in result.source


def test_structure_edits_refuse_calls_they_cannot_copy():
    result = run_operator("insert-verify-step", """
    def solve(task, **kw):
        code = llm(task.prompt, **kw)
        return code
    """, {"step": "code"}, {})
    assert isinstance(result, NotApplicable) and result.reason is Reason.PRECONDITION


def test_rewrite_preset_is_a_real_edit_and_keeps_literal_braces():
    wf = parse_workflow(dedent('''
    def solve(task):
        code = llm(f"Return JSON like {{}} for {task.prompt}")
        return code
    '''))
    op = default_library().get("rewrite-prompt-literal")()
    (preset,) = op.presets(wf, {"step": "code"})
    result = op.apply(wf, {"step": "code"}, preset)
    assert isinstance(result, Applied) and result.source != wf.source
    assert 'f"You are an expert Python programmer.\\nReturn JSON like {{}} for {task.prompt}"' in result.source
    assert op.presets(parse_workflow(result.source), {"step": "code"}) == []


def test_set_call_params_presets_skip_what_the_call_has():
    wf = parse_workflow('def solve(task):\n    return llm(task.prompt, temperature=0.0)\n')
    presets = default_library().get("set-call-params")().presets(wf, {"step": "step1"})
    assert all(p.temperature != 0.0 for p in presets) and len(presets) == 3


def test_rewrite_keeps_a_triple_quoted_constant_triple_quoted():
    assert_operator("rewrite-prompt-literal", '''
    PROMPT = """Write code.
    Be careful."""

    def solve(task):
        return llm(PROMPT)
    ''', None, {"text": 'Write "clean" code.\nTest it twice.'}, '''
    PROMPT = """Write \\"clean\\" code.
    Test it twice."""

    def solve(task):
        return llm(PROMPT)
    ''')
