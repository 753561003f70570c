"""Plan, then code, as an async workflow: the same two steps, each awaited.

The runtime provides an awaitable `llm(prompt, **params)` for async entry functions, and
`extract_code(text)`.
"""


async def solve(task):
    plan = await llm(f"Write a short numbered plan for this task:\n{task.prompt}")
    code = await llm(
        f"Task:\n{task.prompt}\n\nPlan:\n{plan}\n\n"
        "Write the complete Python function in one ```python block.",
        max_tokens=512,
    )
    return extract_code(code) or code
