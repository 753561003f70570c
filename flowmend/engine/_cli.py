"""Command-line verbs of this package (placeholder until its verbs land)."""


def register(sub) -> None:
    """Add this package's verbs to the `flowmend` parser."""
