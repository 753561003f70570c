"""Prompts of the class_async workflow, kept apart from its code."""

# Asked first: a complete draft.
DRAFT_PROMPT = "Write a complete, correct Python solution. Reply with code only."
