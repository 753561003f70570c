"""Command-line verbs of this package."""


def register(sub) -> None:
    """Add this package's verbs to the `flowmend` parser."""
    from flowmend.bench import _bench_cli, _evaluate

    _bench_cli.register(sub)  # bench, report
    _evaluate.register(sub)  # evaluate
