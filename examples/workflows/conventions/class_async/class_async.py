"""A class-based async workflow: steps are `await self.custom_code_generate(...)` calls with the
instruction as a keyword argument, some of them kept in the sibling module `prompts`."""

import prompts


class Workflow:
    def __init__(self, name: str = "class_async"):
        self.name = name

    async def custom_code_generate(self, problem, entry_point, instruction=""):
        # The operator the framework provides: one model call, its answer in a dict.
        text = await llm(f"{instruction}\n\n{problem}\n\nWrite the function {entry_point}.")
        return {"response": text}

    async def __call__(self, problem, entry_point):
        # A first draft, then a reviewed solution.
        draft = await self.custom_code_generate(
            problem=problem,
            entry_point=entry_point,
            instruction=prompts.DRAFT_PROMPT,
        )
        solution = await self.custom_code_generate(
            problem=problem,
            entry_point=entry_point,
            instruction=f"Review this draft and return the corrected code:\n{draft['response']}",
        )
        return solution["response"]


async def solve(task):
    # What the framework's runner does: build the workflow and call it on the problem.
    workflow = Workflow()
    return await workflow(task.prompt, task.entry_point)
