"""A long pipeline: understand, plan, write, test, critique and repair, with helper functions.

About 150 lines, the size of a hand-tuned production workflow; the engine benchmark
(`python -m flowmend.bench.perf_engine`) times parsing, the menu and patch application on it.
The runtime provides `llm(prompt, **params)`, `verify(code)` and `extract_code(text)`.
"""

SYSTEM = "You are a senior Python engineer. Answer precisely and briefly."
STYLE_GUIDE = (
    "Use only the standard library. Keep the given function name and signature. "
    "Handle empty inputs and edge cases explicitly."
)
CRITIQUE_TEMPLATE = (
    "{system}\n\nTask:\n{task}\n\nCandidate solution:\n{code}\n\n"
    "List concrete bugs, one per line. Answer NONE if you find no bug."
)
MAX_REPAIRS = 2


def summarise(task):
    """Restate the task in a few lines, so later prompts stay short."""
    summary = llm(
        f"{SYSTEM}\n\nRestate this programming task in at most three lines, naming the "
        f"inputs, the output and every constraint:\n\n{task.prompt}",
        max_tokens=128,
        temperature=0.0,
    )
    return summary.strip()


def edge_cases(task, summary):
    """Ask for the inputs most likely to break a naive solution."""
    cases = llm(
        "List five tricky inputs for this task, one per line, as Python literals.\n\n"
        "Task summary:\n" + summary + "\n\nFull task:\n" + task.prompt,
        max_tokens=160,
    )
    return [line.strip() for line in cases.splitlines() if line.strip()][:5]


def first_draft(task, plan, cases):
    draft = llm(
        f"{SYSTEM}\n{STYLE_GUIDE}\n\nTask:\n{task.prompt}\n\nPlan:\n{plan}\n\n"
        f"Make sure these inputs work: {', '.join(cases)}\n\n"
        "Write the complete function in one ```python block.",
        max_tokens=512,
        temperature=0.2,
    )
    return extract_code(draft) or draft


def critique(task, code):
    review = llm(
        CRITIQUE_TEMPLATE.format(system=SYSTEM, task=task.prompt, code=code),
        max_tokens=256,
    )
    bugs = [line.strip("-* ").strip() for line in review.splitlines()]
    return [bug for bug in bugs if bug and bug.upper() != "NONE"]


def repair(task, code, bugs):
    fixed = llm(
        f"{SYSTEM}\n\nTask:\n{task.prompt}\n\nCode:\n{code}\n\nFix these bugs:\n"
        + "\n".join(f"- {bug}" for bug in bugs)
        + "\n\nReturn the whole corrected function in one ```python block.",
        max_tokens=512,
    )
    return extract_code(fixed) or code


def choose(task, candidates):
    """Keep the first candidate that compiles; ask the model only to break a tie."""
    compiling = [c for c in candidates if compiles(c)]
    if len(compiling) <= 1:
        return compiling[0] if compiling else candidates[-1]
    numbered = "\n\n".join(f"Candidate {i}:\n{c}" for i, c in enumerate(compiling, 1))
    verdict = llm(
        f"Task:\n{task.prompt}\n\n{numbered}\n\n"
        "Which candidate is correct? Answer with its number only.",
        max_tokens=4,
    )
    digits = "".join(ch for ch in verdict if ch.isdigit())
    index = int(digits) - 1 if digits else 0
    return compiling[index] if 0 <= index < len(compiling) else compiling[0]


def compiles(code):
    try:
        compile(code, "<candidate>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def solve(task):
    summary = summarise(task)
    cases = edge_cases(task, summary)
    plan = llm(
        f"{SYSTEM}\n\nTask summary:\n{summary}\n\n"
        "Write a numbered plan of at most six steps for the function.",
        max_tokens=200,
    )
    code = first_draft(task, plan, cases)
    candidates = [code]
    for _ in range(MAX_REPAIRS):
        bugs = critique(task, code)
        if not bugs:
            break
        code = repair(task, code, bugs)
        candidates.append(code)
    if not compiles(code):
        # A last, plain attempt: some weak models do better without the plan.
        retry = llm(
            f"Write a Python function for this task.\n\n{task.prompt}",
            max_tokens=512,
        )
        candidates.append(extract_code(retry) or retry)
    best = choose(task, candidates)
    checked = verify(best)
    if checked is False:
        explanation = llm(
            "This code fails its checks. Explain the most likely mistake in one line, then "
            "give the corrected function.\n\n" + best,
            max_tokens=400,
        )
        best = extract_code(explanation) or best
    doc = llm(
        "Write a one-line docstring for this function. Answer with the line only.\n\n" + best,
        max_tokens=40,
    )
    return attach_docstring(best, doc)


def attach_docstring(code, doc):
    """Insert `doc` as the first statement of the first function, unless it has one."""
    lines = code.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("def ") and line.rstrip().endswith(":"):
            body = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if body.startswith(('"""', "'''")):
                return code
            indent = " " * (len(line) - len(line.lstrip()) + 4)
            text = doc.strip().strip('"').replace('"""', "'''") or "Solve the task."
            lines.insert(i + 1, f'{indent}"""{text}"""')
            return "\n".join(lines) + ("\n" if code.endswith("\n") else "")
    return code


def describe(task):
    """Not reached from solve: its call is not a step of this workflow."""
    return llm(f"Describe: {task.prompt}")
