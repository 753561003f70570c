"""A class-based workflow: the steps are `await self.generate(...)` calls in its methods.

Prompts live in module-level constants. List its steps with
`flowmend steps examples/workflows/class_based.py --step-callee self.generate`; with the
default callee `llm` the one call inside `generate` is the only step. The runtime provides an
awaitable `llm(prompt, **params)` and `extract_code(text)`.
"""

PLAN_PROMPT = "You are a careful engineer. Write a short numbered plan for this task:\n{task}"
CODE_PROMPT = (
    "Task:\n{task}\n\nPlan:\n{plan}\n\n"
    "Write the complete Python function in one ```python block."
)


class PlanAndCode:
    """Plans first, then writes code from the plan; one model, one temperature."""

    def __init__(self, temperature=0.0):
        self.temperature = temperature

    async def generate(self, prompt, **params):
        return await llm(prompt, temperature=self.temperature, **params)

    async def run(self, task):
        self.plan = await self.generate(PLAN_PROMPT.format(task=task.prompt))
        code = await self.generate(
            CODE_PROMPT.format(task=task.prompt, plan=self.plan), max_tokens=512
        )
        return extract_code(code) or code


async def solve(task):
    return await PlanAndCode().run(task)
