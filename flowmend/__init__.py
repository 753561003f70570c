"""flowmend: test-time repair and optimisation of LLM workflows with typed AST edits."""

__version__ = "0.1.0"
