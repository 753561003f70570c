"""Mixed conventions: a plain `llm` call plans, an agent with a tuple result writes the code,
and a reply object carries a reviewer's text in `.content`."""

from types import SimpleNamespace


def coder(inputs, instruction):
    reply = llm(instruction + "\n\n" + "\n".join(map(str, inputs)))
    return reply, extract_code(reply)


def reviewer(prompt, temperature=0.0):
    return SimpleNamespace(content=llm(prompt, temperature=temperature))


def solve(task):
    plan = llm(f"Write a short plan for:\n{task.prompt}", max_tokens=256)
    code_instruction = f"Follow the plan and write the code:\n{plan}"
    thinking, code = coder([task.prompt], code_instruction)
    review = reviewer(f"Fix any bug in this code and return it whole:\n{code}")
    return review.content
