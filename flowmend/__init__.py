"""flowmend: test-time repair and optimisation of LLM workflows with typed AST edits."""

__version__ = "0.1.0"


def console() -> int:
    """The `flowmend` command: a Ctrl-C while it is still starting is a quiet exit 130, not a
    traceback from whichever import it interrupted."""
    try:
        from flowmend.cli import main
    except KeyboardInterrupt:
        return 130
    return main()
