"""Self-consistency with a list of agents: the same instruction sent by each agent of a list in
a loop, then a final decision over their answers."""


def make_agent(role):
    def agent(inputs, instruction, temperature=0.8):
        reply = llm(f"You are a {role}.\n{instruction}\n\n" + "\n".join(map(str, inputs)),
                    temperature=temperature)
        return reply, extract_code(reply)

    return agent


ROLES = ("careful programmer", "tester", "reviewer")


def solve(task):
    agents = [make_agent(role) for role in ROLES]
    instruction = "Please think step by step and then solve the task."
    answers = []
    for i in range(len(agents)):
        thinking, answer = agents[i]([task.prompt], instruction, temperature=0.8)
        answers.append(answer)
    # The decision agent picks one answer.
    final_instruction = "Given all the solutions above, reply with the most likely correct code."
    thinking, code = decide_agent([task.prompt, *answers], final_instruction)
    return code


def decide_agent(inputs, instruction, temperature=0.0):
    reply = llm(instruction + "\n\n" + "\n".join(map(str, inputs)), temperature=temperature)
    return reply, extract_code(reply)
