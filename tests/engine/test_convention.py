"""Step conventions: which calls are steps, where prompts are, tuple ids, prompt variables,
and the project config that names them."""

import json
import textwrap

import pytest

from flowmend.engine import (Convention, ConventionError, ProjectConfigError, WorkflowError,
                             explain_calls, find_project_config, parse_workflow,
                             read_project_config)

AGENT = Convention(name="agent", callees=("cot_agent", "agents"), prompt=("#1",),
                   params=("temperature",), answer="item:1")


def _wf(source: str, *conventions: Convention, entry: str = "solve"):
    return parse_workflow(textwrap.dedent(source), entry=entry,
                          conventions=conventions or None, path="w.py")


def test_the_default_convention_reads_workflows_as_before():
    wf = _wf('''
        def solve(task):
            code = llm(task.prompt, temperature=0.2)
            return code
    ''')
    step = wf.steps[0]
    assert (step.id, step.prompt.kind, step.params) == ("code", "opaque", (("temperature", "0.2"),))
    assert "convention" not in step.to_json() and "conventions" not in wf.to_json()
    assert wf.conventions == (Convention(),)


def test_keyword_prompt_subscript_callees_tuple_ids_and_local_prompt_variables():
    wf = _wf('''
        def solve(task):
            # the instruction, shared by two steps
            cot_instruction = "Think step by step about {}."
            thinking, answer = cot_agent([task], cot_instruction, temperature=0.5)
            outs = [agents[i]([task], cot_instruction) for i in range(3)]
            return answer
    ''', AGENT)
    first, second = wf.steps
    assert (first.id, first.target, first.callee) == ("answer", "answer", "cot_agent")
    assert second.callee == "agents[]" and second.id == "step2"
    assert first.prompt.variable == "cot_instruction"
    assert first.prompt.text == "Think step by step about {}."
    assert first.prompt.shared_by == ("answer", "step2")
    assert dict(first.params) == {"#0": "[task]", "temperature": "0.5"}
    assert first.to_json()["convention"] == "agent"


def test_a_tuple_target_without_an_item_answer_takes_its_first_name():
    conv = Convention(name="c", callees=("agent",), prompt=("instruction",))
    wf = _wf('''
        async def solve(task):
            draft, notes = await agent(problem=task.prompt, instruction=f"Solve {task.prompt}")
            return draft
    ''', conv)
    step = wf.steps[0]
    assert (step.id, step.awaited, step.prompt.kind) == ("draft", True, "fstring")
    assert step.prompt.placeholders == ("task.prompt",)
    assert dict(step.params) == {"problem": "task.prompt"}


def test_a_prompt_variable_assigned_twice_is_refused_with_the_reason():
    wf = _wf('''
        def solve(task):
            prompt = "Plan it."
            if task.prompt:
                prompt = "Solve it."
            return llm(prompt)
    ''')
    prompt = wf.steps[0].prompt
    assert prompt.kind == "opaque" and prompt.text is None
    assert "bound 2 times (lines 3, 5)" in prompt.note


def test_a_convention_naming_a_prompt_the_call_does_not_pass_is_a_one_line_error():
    conv = Convention(name="kw", callees=("self.generate",), prompt=("instruction",))
    with pytest.raises(WorkflowError) as err:
        _wf('''
            class Flow:
                async def __call__(self, problem):
                    return await self.generate(problem=problem)
        ''', conv, entry="Flow.__call__")
    assert str(err.value).startswith("w.py:4: convention 'kw' puts the prompt in instruction=")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "callees": ["f"], "colour": 1}, "unknown key(s) colour"),
    ({"name": "x", "callees": ["f"], "prompt": ["1 + 1"]}, "neither a keyword name nor #N"),
    ({"name": "x", "callees": ["f"], "answer": "key:a b"}, "must be result, key:NAME"),
    ({"name": "x", "callees": []}, "callees must be non-empty"),
])
def test_malformed_conventions_are_refused(data, message):
    with pytest.raises(ConventionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Convention.from_json(data)


def test_conventions_round_trip_through_json_and_have_a_stable_text():
    again = Convention.from_json(json.loads(json.dumps(AGENT.to_json())))
    assert again == AGENT and again.canonical() == AGENT.canonical()
    assert Convention.from_json({"name": "p", "callees": "f", "prompt": 1}).prompt == ("#1",)
    assert AGENT.answer_of("r") == "r[1]"
    assert Convention(answer="key:response").answer_of("r") == "r['response']"
    assert Convention(answer="attr:content").answer_of("r") == "r.content"


def test_explain_says_why_each_call_is_or_is_not_a_step():
    wf = _wf('''
        def helper(task):
            return cot_agent([task], "unused")

        def solve(task):
            cot_instruction = "Think."
            thinking, answer = cot_agent([task], cot_instruction)
            return print_it(answer)
    ''', AGENT)
    notes = {n.line: n for n in explain_calls(wf)}
    assert notes[3].step is None and "not reached from the entry solve" in notes[3].why
    assert notes[7].step == "answer" and "local variable cot_instruction" in notes[7].why
    assert notes[8].step is None and "matches no callee pattern" in notes[8].why


def test_the_project_config_is_found_walking_up_and_checked(tmp_path):
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent('''
        [tool.flowmend]
        entry = "Flow.run"
        models = {program = "gemma3-270m"}
        [[tool.flowmend.conventions]]
        name = "agent"
        callees = ["cot_agent"]
        prompt = [1]
        answer = "item:1"
    '''))
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    config = find_project_config(nested / "w.py")
    assert config.entry == "Flow.run" and config.models == {"program": "gemma3-270m"}
    assert config.conventions[0].prompt == ("#1",)
    (nested / "flowmend.toml").write_text('entry = "main"\n')
    assert find_project_config(nested / "w.py").entry == "main"  # the nearest wins
    (nested / "flowmend.toml").write_text('entry = "main"\ncolour = 3\n')
    with pytest.raises(ProjectConfigError, match="unknown key.s. colour"):
        find_project_config(nested / "w.py")
    (nested / "flowmend.toml").write_text('entry = \n')
    with pytest.raises(ProjectConfigError, match="not TOML"):
        read_project_config(nested / "flowmend.toml")


def test_a_relatively_imported_sibling_prompt_is_a_constant_of_that_file(tmp_path):
    (tmp_path / "prompts.py").write_text('# the review prompt\nREVIEW = "Review it."\nN = 3\n')
    source = textwrap.dedent('''
        from . import prompts as p

        def solve(task):
            review = llm(p.REVIEW)
            other = llm(p.N)
            return review
    ''')
    wf = parse_workflow(source, path=str(tmp_path / "w.py"))
    review, other = wf.steps
    assert review.prompt.to_json() == {
        "kind": "constant", "text": "Review it.", "placeholders": [], "constant": "REVIEW",
        "module": str(tmp_path / "prompts.py")}
    assert other.prompt.kind == "opaque" and "no string constant N" in other.prompt.note
