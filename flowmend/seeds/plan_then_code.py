"""Plan, then code: the canonical seed workflow.

A first call writes a plan for the task; a second call writes the code from that plan. The
runtime provides `llm(prompt, **params)` and `extract_code(text)`.
"""


def solve(task):
    plan = llm(f"Plan: {task.prompt}")
    code = llm(f"Write code based on plan:\n{plan}")
    return extract_code(code) or code
