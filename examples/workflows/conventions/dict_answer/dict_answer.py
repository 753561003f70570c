"""A workflow whose steps answer with a dict: the text is under "response"."""


def generate(problem, instruction, max_tokens=512):
    text = llm(f"{instruction}\n\n{problem}", max_tokens=max_tokens)
    return {"response": text, "tokens": len(text.split())}


def solve(task):
    plan = generate(problem=task.prompt, instruction="Outline the algorithm in three steps.")
    solution = generate(
        problem=task.prompt,
        instruction=f"Follow this plan and write the code:\n{plan['response']}",  # the plan joins here
        max_tokens=768,
    )
    return solution["response"]
