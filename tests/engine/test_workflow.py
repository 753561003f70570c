"""The workflow model: steps, ids, prompts, data flow, round-trip and bad input."""

from __future__ import annotations

import textwrap
from pathlib import Path

import hypothesmith
import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings
from libcst.metadata import PositionProvider

from flowmend.engine import Workflow, WorkflowError, parse_workflow
from flowmend.errors import UserError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"
# (file, step callees) for every seed workflow; class_based is read both ways.
SEEDS = [
    ("single_shot.py", ("llm",)),
    ("plan_then_code.py", ("llm",)),
    ("generate_then_review.py", ("llm",)),
    ("async_plan_then_code.py", ("llm",)),
    ("class_based.py", ("self.generate",)),
    ("class_based.py", ("llm",)),
    ("long_pipeline.py", ("llm",)),
]


def seed(name: str, callees=("llm",)) -> Workflow:
    path = EXAMPLES / name
    return parse_workflow(path.read_text(), path=str(path), step_callees=callees)


def wf_of(source: str, **kw) -> Workflow:
    return parse_workflow(textwrap.dedent(source).lstrip("\n"), **kw)


def summary(wf: Workflow) -> list[tuple]:
    return [(s.id, s.prompt.kind if s.prompt else None, s.reads, s.feeds) for s in wf.steps]


# --- the seed workflows ------------------------------------------------------------------------


def test_plan_then_code_is_the_canonical_two_step_chain():
    wf = seed("plan_then_code.py")
    assert wf.entry == "solve" and not wf.is_async
    assert summary(wf) == [
        ("plan", "fstring", ("task",), ("code",)),
        ("code", "fstring", ("plan",), ()),
    ]
    plan, code = wf.steps
    assert plan.prompt.text == "Plan: {task.prompt}"
    assert plan.prompt.placeholders == ("task.prompt",)
    assert code.prompt.text == "Write code based on plan:\n{plan}"
    assert code.consumes == ("plan",)
    assert (plan.line, code.line) == (9, 10)
    assert plan.target == "plan" and plan.callee == "llm" and plan.function == "solve"
    assert plan.flow_caveat is None and code.flow_caveat is None


def test_single_shot_reads_params_and_implicitly_concatenated_fstring():
    (step,) = seed("single_shot.py").steps
    assert step.id == "code"
    assert step.prompt.kind == "fstring"
    assert step.prompt.text.startswith("Complete the following Python function.")
    assert step.prompt.text.endswith("block.\n\n{task.prompt}")
    assert step.params == (("temperature", "0.0"), ("max_tokens", "512"))


def test_generate_then_review_concat_and_format_prompts():
    wf = seed("generate_then_review.py")
    assert summary(wf) == [
        ("draft", "fstring", ("task",), ("review", "code")),
        ("review", "concat", ("REVIEW_OK", "task", "draft"), ("code",)),
        ("code", "format", ("task", "draft", "review"), ()),
    ]
    review, code = wf.step("review"), wf.step("code")
    # The module constant inside the concatenation is resolved into the text.
    assert "or answer LGTM if there is none" in review.prompt.text
    assert review.prompt.placeholders == ("task.prompt", "draft")
    assert code.prompt.placeholders == ("task", "draft", "review")
    assert code.prompt.constant is None
    assert code.consumes == ("draft", "review")


def test_async_variant_marks_awaited_steps():
    wf = seed("async_plan_then_code.py")
    assert wf.is_async
    assert [(s.id, s.awaited) for s in wf.steps] == [("plan", True), ("code", True)]
    assert wf.step("plan").feeds == ("code",)
    assert wf.step("code").params == (("max_tokens", "512"),)


def test_class_based_steps_are_method_calls_with_constant_templates():
    wf = seed("class_based.py", ("self.generate",))
    assert wf.is_async
    assert sorted(f.qualname for f in wf.functions) == ["PlanAndCode.__init__", "PlanAndCode.run", "solve"]
    plan, code = wf.steps
    assert (plan.id, plan.target, plan.function, plan.callee) == (
        "plan", "self.plan", "PlanAndCode.run", "self.generate")
    assert plan.prompt.kind == "format" and plan.prompt.constant == "PLAN_PROMPT"
    assert plan.prompt.placeholders == ("task",)
    assert code.prompt.constant == "CODE_PROMPT"
    assert code.reads == ("CODE_PROMPT", "task", "self.plan")
    # self.plan is written once, in the method that reads it: the flow is exact.
    assert plan.feeds == ("code",) and plan.flow_caveat is None and code.flow_caveat is None


def test_class_based_with_default_callee_finds_the_wrapped_call():
    (step,) = seed("class_based.py").steps
    assert (step.id, step.function, step.prompt.kind) == ("step1", "PlanAndCode.generate", "opaque")
    assert step.prompt.placeholders == ("prompt",)
    assert step.flow_caveat  # its prompt arrives through a parameter


def test_long_pipeline_finds_steps_in_helpers_and_skips_unreached_functions():
    wf = seed("long_pipeline.py")
    assert wf.step_ids == ("summary", "cases", "draft", "review", "fixed", "verdict", "plan",
                           "retry", "explanation", "doc")
    assert "describe" not in {s.function for s in wf.steps}
    assert wf.step("review").prompt.constant == "CRITIQUE_TEMPLATE"
    assert wf.step("plan").consumes == ("summary",)
    assert wf.step("cases").flow_caveat is not None


@pytest.mark.parametrize("name,callees", SEEDS)
def test_seed_round_trips_and_positions_match(name, callees):
    wf = seed(name, callees)
    assert wf.module.code == wf.source
    for step in wf.steps:
        assert wf.position(step.call).start.line == step.line
        assert _contains(wf.module, step.call)  # the very node of the shared module
        if step.statement is not None:
            assert _contains(step.statement, step.call)
    assert len(set(wf.step_ids)) == len(wf.steps)
    compile(wf.source, name, "exec")


def _contains(tree: cst.CSTNode, node: cst.CSTNode) -> bool:
    found = []

    class Finder(cst.CSTVisitor):
        def on_visit(self, n):
            if n is node:
                found.append(n)
            return not found

    tree.visit(Finder())
    return bool(found)


def test_metadata_is_resolved_once_and_keyed_by_the_module_nodes():
    wf = seed("plan_then_code.py")
    assert wf.metadata(PositionProvider) is wf.metadata(PositionProvider)
    fn = wf.entry_function.node
    assert wf.line(fn) == 8


# --- ids and callees ---------------------------------------------------------------------------


def test_repeated_names_get_numbered_ids_in_source_order():
    wf = wf_of('''
        def solve(task):
            code = llm(task.prompt)
            code = llm(f"Fix: {code}")
            llm("log")
            code_2 = "taken"
            return llm(f"Last: {code}")
    ''')
    assert wf.step_ids == ("code", "code_2", "step3", "step4")
    assert wf.step("code_2").consumes == ("code",)
    assert wf.step("step4").consumes == ("code_2",)


def test_step_callee_globs_and_attribute_calls():
    wf = wf_of('''
        class Bot:
            def custom_ask(self, p):
                return p

            def solve(self, task):
                a = self.custom_ask(task.prompt)
                b = self.custom_think(a)
                return self.other(b)
    ''', entry="Bot.solve", step_callees=("self.custom*",))
    assert [(s.id, s.callee) for s in wf.steps] == [("a", "self.custom_ask"), ("b", "self.custom_think")]
    assert wf.step("a").feeds == ("b",)


def test_steps_in_nested_calls_and_keyword_prompts():
    wf = wf_of('''
        def solve(task):
            code = extract_code(llm(prompt=llm("Plan: " + task.prompt), temperature=0.2))
            return code
    ''')
    outer, inner = wf.steps
    assert outer.id == "step1" and inner.id == "step2"  # the assignment wraps extract_code
    assert outer.params == (("temperature", "0.2"),)
    assert outer.consumes == ("step2",) and inner.prompt.kind == "concat"
    assert inner.prompt.text == "Plan: {task.prompt}"


def test_constant_prompt_and_shadowed_constant():
    wf = wf_of('''
        PROMPT = "Say hi"
        OTHER = "x"

        def solve(task):
            a = llm(PROMPT)
            OTHER = task.prompt
            b = llm(OTHER)
            return a + b
    ''')
    assert wf.step("a").prompt == wf.step("a").prompt.__class__("constant", "Say hi", (), "PROMPT")
    assert wf.step("b").prompt.kind == "opaque"


# --- data flow -----------------------------------------------------------------------------------


def test_reassignment_kills_the_earlier_definition():
    wf = wf_of('''
        def solve(task):
            plan = llm("a")
            plan = "fixed text"
            return llm(plan)
    ''')
    assert wf.step("plan").feeds == ()


def test_branches_and_loops_join_conservatively():
    wf = wf_of('''
        def solve(task):
            draft = llm("a")
            if task.prompt:
                text = draft
            else:
                text = task.prompt
            for _ in range(3):
                text = llm(f"improve {text}")
            notes = []
            notes.append(text)
            return llm(str(notes))
    ''')
    assert wf.step("text").consumes == ("draft", "text")  # the loop feeds itself
    # Through notes.append; the loop may run zero times, so draft may still reach it.
    assert wf.step("step3").consumes == ("draft", "text")
    assert all(s.flow_caveat is None for s in wf.steps)


def test_walrus_match_and_lambda():
    wf = wf_of('''
        def solve(task):
            if (plan := llm("p")):
                pass
            match plan:
                case "x":
                    code = llm(plan)
                case [first, *rest] if first:
                    code = llm(first)
                case _:
                    code = llm("y")
            ask = lambda p: llm(p)
            return ask(code)
    ''')
    assert wf.step_ids == ("plan", "code", "code_2", "code_3", "step5")
    assert wf.step("plan").feeds == ("code", "code_2")  # through the walrus and the capture
    assert wf.step("code_3").consumes == ()
    assert "lambda" in wf.step("step5").flow_caveat


def test_flow_through_helpers_is_marked_approximate():
    wf = wf_of('''
        def ask(x):
            return llm(x)

        def solve(task):
            plan = llm("p")
            code = ask(plan)
            return llm(code)
    ''')
    assert wf.step("step1").consumes == ("plan",)
    assert wf.step("step3").consumes == ("step1",)
    assert "approximate" in wf.step("plan").flow_caveat
    assert "approximate" in wf.step("step3").flow_caveat


def test_flow_through_a_mutated_module_level_object_is_tracked():
    wf = wf_of('''
        NOTES = []

        def record(x):
            NOTES.append(x)

        def solve(task):
            plan = llm("p")
            record(plan)
            return llm(str(NOTES))
    ''')
    assert wf.step("step2").consumes == ("plan",)
    assert "module-level object" in wf.step("step2").flow_caveat


@pytest.mark.parametrize("body,why", [
    ("global G\n    G = llm('a')\n    return llm(G)", "global"),
    ("def inner():\n        return plan\n    plan = llm('a')\n    return llm(inner())", "nested"),
    ("plan = llm('a')\n    return llm(eval('plan'))", "eval"),
])
def test_dynamic_functions_get_a_caveat(body, why):
    wf = parse_workflow(f"def solve(task):\n    {body}\n")
    assert all(why in (s.flow_caveat or "") for s in wf.steps)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("source,message,where", [
    ("def solve(task):\n    return llm(\n", "not Python", "w.py:"),
    ("def solve(task) return 1\n", "not Python", "w.py:1:"),
    ("def other(task):\n    return llm(task)\n", "no entry function 'solve'", "w.py"),
    ("def solve(task):\n    return task\n", "makes no step call", "w.py:1"),
])
def test_bad_input_is_one_line_naming_file_and_line(source, message, where):
    with pytest.raises(WorkflowError) as info:
        parse_workflow(source, path="w.py")
    text = str(info.value)
    assert isinstance(info.value, UserError)
    assert message in text and text.startswith(where) and "\n" not in text


@pytest.mark.parametrize("source,what,line", [
    ("def solve(task):\n    return llm(1)\n\n  \n", "whitespace on the blank lines", 3),
    ("\ufeffdef solve(task):\n    return llm(1)\n", "byte-order mark", 1),
    ("def solve(task):\r    return llm(1)\r", "bare CR line ends", 2),
])
def test_files_libcst_cannot_reproduce_are_refused(source, what, line):
    with pytest.raises(WorkflowError) as info:
        parse_workflow(source, path="w.py")
    assert str(info.value).startswith(f"w.py:{line}: cannot keep this file byte-identical")
    assert what in str(info.value)


def test_entry_can_be_a_method():
    wf = wf_of('''
        class Flow:
            def run(self, task):
                return llm(task.prompt)
    ''', entry="Flow.run")
    assert wf.entry_function.cls == "Flow" and wf.steps[0].function == "Flow.run"


def test_empty_step_callee_is_refused():
    with pytest.raises(WorkflowError, match="step callee"):
        parse_workflow("def solve(t):\n    return llm(t)\n", step_callees=("",))


# --- robustness on generated programs ---------------------------------------------------------------


STEP = "\n\ndef solve(task):\n    plan = llm(f'Plan: {task.prompt}')\n    return llm(plan)\n"


# Random grammar-valid programs say things like `1()`: Python's SyntaxWarning about them is noise.
@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(hypothesmith.from_grammar())
def test_generated_programs_round_trip_or_fail_cleanly(program):
    source = program + STEP
    try:
        wf = parse_workflow(source)
    except WorkflowError:
        return  # e.g. the generated code redefines solve, or libcst rejects it: a clean error
    assert wf.module.code == source
    assert wf.steps


# --- path-copy edits ---------------------------------------------------------------------------


def test_replace_rebuilds_only_the_path_and_keeps_the_rest_byte_identical():
    wf = seed("long_pipeline.py")
    call = wf.step("retry").call
    new_call = call.with_changes(func=cst.Name("llm2"))
    out = wf.replace({call: new_call}).code
    assert out == wf.source.replace("retry = llm(", "retry = llm2(", 1)
    assert wf.module.code == wf.source  # the parent is untouched
    assert wf.parent(call) is not None and wf.parent(wf.module) is None


def test_replace_removes_and_flattens_in_sequences():
    wf = seed("plan_then_code.py")
    plan = wf.step("plan").statement
    extra = cst.parse_statement("note = 1\n")
    flattened = wf.replace({plan: cst.FlattenSentinel([plan, extra])}).code
    assert "    plan = llm(f\"Plan: {task.prompt}\")\nnote = 1\n" not in flattened
    assert "    note = 1\n    code = llm(" in flattened
    removed = wf.replace({plan: cst.RemovalSentinel.REMOVE}).code
    assert "plan = llm" not in removed and "code = llm" in removed


def test_replace_refuses_nodes_of_another_tree():
    wf = seed("plan_then_code.py")
    with pytest.raises(ValueError, match="not a node of this workflow"):
        wf.replace({cst.Name("x"): cst.Name("y")})


def test_parse_workflow_takes_an_already_parsed_module():
    source = "def solve(task):\n    code = llm(task.prompt)\n    return code\n"
    module = cst.parse_module(source)
    wf = parse_workflow(source, module=module)
    assert wf.module is module and wf.step_ids == ("code",)
    with pytest.raises(WorkflowError, match="byte-identical"):
        parse_workflow(source + "\n", module=module)  # the module must be that source's


def test_an_edited_workflow_reads_its_model_on_first_use_and_may_lose_every_step():
    from flowmend.engine import Applied, Patch, apply_patch
    from flowmend.engine._workflow import _MODEL

    wf = parse_workflow("def solve(task):\n    llm(task.prompt)\n    return 1\n")
    result = apply_patch(wf, Patch("remove-step", {"step": "step1"}, {}))
    assert isinstance(result, Applied)
    assert _MODEL not in result.workflow._cache  # nothing read yet
    assert result.workflow.steps == ()  # an edit may remove the last step: no error, no steps
    with pytest.raises(WorkflowError, match="makes no step call"):
        parse_workflow(result.source)  # a workflow read from source must have one
