"""Agent style: each step returns (thinking, answer), and the instructions live in local
variables assigned just before the calls."""


def cot_agent(inputs, instruction, temperature=0.5):
    # One chain-of-thought agent: its thinking and its answer.
    reply = llm(f"{instruction}\n\n" + "\n".join(str(i) for i in inputs), temperature=temperature)
    return reply, extract_code(reply)


def solve(task):
    # Think first, then answer with code.
    cot_instruction = "Please think step by step and then solve the task."
    thinking, answer = cot_agent([task.prompt], cot_instruction, temperature=0.7)
    refine_instruction = f"Given the previous attempt, write the final code for {task.entry_point}."
    thinking, code = cot_agent([task.prompt, thinking, answer], refine_instruction)
    return code
