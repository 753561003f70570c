"""What every structure operator shares: methods as steps, calls they cannot copy, async workflows."""

import pytest

from flowmend.engine._operator import Applied, NotApplicable, Reason
from flowmend.engine.testing import run_operator
from tests.operators.scripted import GOOD, Script, WRONG, apply, run


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


def test_structure_edits_refuse_calls_they_cannot_copy():
    result = run_operator("insert-verify-step", """
    def solve(task, **kw):
        code = llm(task.prompt, **kw)
        return code
    """, {"step": "code"}, {})
    assert isinstance(result, NotApplicable) and result.reason is Reason.PRECONDITION


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
