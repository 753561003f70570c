"""Single-shot code generation: one model call, and its answer is the program.

The runtime provides `llm(prompt, **params)` and `extract_code(text)`; `solve(task)` returns
the code of the function the task asks for.
"""


def solve(task):
    code = llm(
        "Complete the following Python function. Reply with the whole function in one "
        f"```python block.\n\n{task.prompt}",
        temperature=0.0,
        max_tokens=512,
    )
    return extract_code(code) or code
