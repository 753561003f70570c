"""`rewrite-prompt-literal`: what it does beyond its own examples (its edits, and how they run)."""

from flowmend.engine import default_library
from flowmend.engine._operator import Applied, Reason
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
