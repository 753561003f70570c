"""The edited workflows do what the operators say when they run.

A scripted `llm` (answers in order, or raising) stands in for the model, and `verify` checks the
answer with the runtime's own `Check` and `extract_code`: operators know nothing of models, so
the model is the only thing these tests script.
"""

import asyncio
import types

from flowmend.engine.testing import run_operator
from flowmend.verifier.runtime_helpers import Check, extract_code

SINGLE = """
def solve(task):
    code = llm(task.prompt)
    return code
"""


class Script:
    """Answers in order; an exception instance in the list is raised instead."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.prompts = []

    def __call__(self, prompt, **params):
        self.prompts.append((prompt, params))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def verify(code):
    source = extract_code(code)
    if not source:
        return Check(False, "no_code", "no code found")
    try:
        compile(source, "<answer>", "exec")
    except SyntaxError as err:
        return Check(False, "syntax_error", f"SyntaxError: {err.msg}")
    namespace = {}
    try:
        exec(source, namespace)
        assert namespace["add"](1, 2) == 3, "add(1, 2) != 3"
    except AssertionError as err:
        return Check(False, "failing_check", str(err))
    except Exception as err:  # noqa: BLE001
        return Check(False, "runtime_error", f"{type(err).__name__}: {err}")
    return Check(True, "ok")


GOOD = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"
BROKEN = "def add(a, b) return\n"


def run(source, llm, entry="solve"):
    namespace = {"llm": llm, "verify": verify, "extract_code": extract_code}
    exec(compile(source, "<workflow>", "exec"), namespace)
    task = types.SimpleNamespace(prompt="Write add(a, b).", entry_point="add")
    output = namespace[entry](task)
    return asyncio.run(output) if asyncio.iscoroutine(output) else output


def apply(operator, args, before=SINGLE, target=None):
    return run_operator(operator, before, target or {"step": "code"}, args).source


def test_wrap_in_retry_retries_until_verify_passes():
    llm = Script(WRONG, BROKEN, GOOD, "unused")
    assert run(apply("wrap-in-retry", {"max_attempts": 4, "until": "verify"}), llm) == GOOD
    assert len(llm.prompts) == 3


def test_wrap_in_retry_reraises_after_the_last_attempt():
    source = apply("wrap-in-retry", {"max_attempts": 2})
    assert run(source, Script(TimeoutError("slow"), GOOD)) == GOOD
    try:
        run(source, Script(TimeoutError("1"), TimeoutError("2")))
    except TimeoutError as err:
        assert str(err) == "2"
    else:
        raise AssertionError("the last failure should propagate")


def test_wrap_in_retry_until_compiles_skips_broken_code():
    llm = Script(BROKEN, WRONG)
    assert run(apply("wrap-in-retry", {"max_attempts": 3, "until": "compiles"}), llm) == WRONG


def test_insert_verify_step_repairs_only_on_failure_with_the_feedback():
    source = apply("insert-verify-step", {})
    passing = Script(GOOD)
    assert run(source, passing) == GOOD and len(passing.prompts) == 1
    failing = Script(WRONG, GOOD)
    assert run(source, failing) == GOOD
    repair_prompt = failing.prompts[1][0]
    assert "failing_check" in repair_prompt and "add(1, 2) != 3" in repair_prompt and WRONG in repair_prompt


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


def test_sample_and_select_keeps_the_first_passing_sample():
    llm = Script(WRONG, GOOD, BROKEN)
    assert run(apply("sample-and-select", {"n": 3, "temperature": 0.9}), llm) == GOOD
    assert [p[1] for p in llm.prompts] == [{"temperature": 0.9}] * 3
    assert run(apply("sample-and-select", {"n": 2}), Script(WRONG, BROKEN)) == WRONG


def test_add_step_threads_the_plan_into_the_next_prompt():
    llm = Script("1. add them", GOOD)
    assert run(apply("add-step", {"purpose": "plan", "position": "before"}), llm) == GOOD
    plan_prompt, code_prompt = llm.prompts[0][0], llm.prompts[1][0]
    assert plan_prompt.endswith("Write add(a, b).") and "plan" in plan_prompt
    assert code_prompt == "Write add(a, b).\n\nPlan:\n1. add them"


def test_async_workflows_await_every_new_call():
    async_single = "async def solve(task):\n    code = await llm(task.prompt)\n    return code\n"

    def async_llm(answers):
        script = Script(*answers)

        async def llm(prompt, **params):
            return script(prompt, **params)

        return llm, script

    for operator, args, answers in [
        ("insert-verify-step", {}, (WRONG, GOOD)),
        ("branch-on-check", {}, (WRONG, GOOD)),
        ("wrap-in-retry", {"until": "verify"}, (WRONG, GOOD)),
        ("sample-and-select", {"n": 2}, (WRONG, GOOD)),
        ("add-step", {}, ("plan", GOOD)),
    ]:
        llm, script = async_llm(answers)
        assert run(apply(operator, args, before=async_single), llm) == GOOD, operator
        assert not script.answers, operator
