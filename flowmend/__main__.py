"""`python -m flowmend` and the `flowmend` console script: the command line's entry point."""


def console() -> int:
    """The `flowmend` command: a Ctrl-C while it is still starting is a quiet exit 130, not a
    traceback from whichever import it interrupted."""
    try:
        from flowmend.cli import main
    except KeyboardInterrupt:
        return 130
    return main()


if __name__ == "__main__":
    raise SystemExit(console())
