"""A debate: several agents answer, then see each other's answers for a few rounds, and a
final agent decides."""

ROUNDS = 2


def debate_agent(inputs, instruction, temperature=0.8):
    reply = llm(instruction + "\n\n" + "\n".join(map(str, inputs)), temperature=temperature)
    return reply, extract_code(reply)


def solve(task):
    debaters = [debate_agent, debate_agent, debate_agent]
    initial_instruction = "Please think step by step and then solve the task."
    debate_instruction = "Given the solutions of other agents, update your answer."
    answers = [None] * len(debaters)
    for round_index in range(ROUNDS):
        for i in range(len(debaters)):
            if round_index == 0:
                thinking, answer = debaters[i]([task.prompt], initial_instruction)
            else:
                thinking, answer = debaters[i]([task.prompt, *answers], debate_instruction)
            answers[i] = answer
    final_instruction = "Given all the answers above, write the final code."
    thinking, final = debate_agent([task.prompt, *answers], final_instruction, temperature=0.0)
    return final
