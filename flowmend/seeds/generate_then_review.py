"""Generate, then self-review: a draft, a review of the draft, and a revision if needed.

The runtime provides `llm(prompt, **params)` and `extract_code(text)`.
"""

REVIEW_OK = "LGTM"


def solve(task):
    draft = llm(
        f"Write a Python function for this task. Reply with code only.\n\n{task.prompt}",
        max_tokens=512,
    )
    review = llm(
        "Review this solution for bugs and missed requirements. List each problem on its "
        "own line, or answer " + REVIEW_OK + " if there is none.\n\n"
        f"Task:\n{task.prompt}\n\nSolution:\n{draft}",
        max_tokens=256,
    )
    if REVIEW_OK in review:
        return extract_code(draft) or draft
    # Only a review that found something is worth a second writing call.
    code = llm(
        "Task:\n{task}\n\nDraft:\n{draft}\n\nReview:\n{review}\n\n"
        "Write the corrected function in one ```python block.".format(
            task=task.prompt, draft=draft, review=review
        ),
        max_tokens=512,
    )
    return extract_code(code) or code
