"""Running an edited workflow with a scripted model: what the behaviour tests of each operator use.

A scripted `llm` (answers in order, or raising) stands in for the model, and `verify` checks the
answer with the runtime's own `Check` and `extract_code`: operators know nothing of models, so
the model is the only thing these tests script.
"""

import asyncio
import types

from flowmend.engine.testing import run_operator
from flowmend.verifier.runtime_helpers import BudgetExhausted, Check, extract_code

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
    namespace = {"llm": llm, "verify": verify, "extract_code": extract_code,
                 "BudgetExhausted": BudgetExhausted}
    exec(compile(source, "<workflow>", "exec"), namespace)
    task = types.SimpleNamespace(prompt="Write add(a, b).", entry_point="add")
    output = namespace[entry](task)
    return asyncio.run(output) if asyncio.iscoroutine(output) else output


def apply(operator, args, before=SINGLE, target=None):
    return run_operator(operator, before, target or {"step": "code"}, args).source
