"""`flowmend sandbox exec|check`: run untrusted code in the sandbox from the command line."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    """Add this package's verbs to the `flowmend` parser."""
    parser = sub.add_parser(
        "sandbox",
        help="run untrusted code in flowmend's sandbox",
        description=(
            "Run untrusted Python in fresh Linux namespaces (no network, read-only system, "
            "private /tmp, empty environment, unprivileged uid) under resource limits."
        ),
    )
    verbs = parser.add_subparsers(dest="sandbox_verb", metavar="ACTION", required=True)

    run = verbs.add_parser(
        "exec", help="run FILE.py as untrusted code and print its verdict",
        description="Run FILE.py as untrusted code. Verdict statuses: ok, error, timeout, "
                    "memory, crash, output_limit, harness_error.")
    run.add_argument("file", metavar="FILE.py", help="the program to run")
    _common(run)
    run.add_argument("--memory-mb", type=int, default=1024, metavar="M",
                     help="address-space limit in MiB (default: 1024)")
    run.set_defaults(run=_run_exec, starts_processes=True)

    check = verbs.add_parser(
        "check", help="load code, then run each test snippet under its own time limit",
        description="Load --code, then run each snippet of --tests (a JSON list of strings "
                    "such as \"assert add(1, 2) == 3\") in the same child, one after another, "
                    "each with its own time limit; a hanging test does not sink the others.")
    check.add_argument("--code", required=True, metavar="FILE.py", help="the code under test")
    check.add_argument("--tests", required=True, metavar="TESTS.json",
                       help="a JSON list of test snippets")
    _common(check)
    check.add_argument("--test-timeout", type=float, default=3.0, metavar="S",
                       help="seconds per test (default: 3)")
    check.add_argument("--memory-mb", type=int, default=1024, metavar="M",
                       help="address-space limit in MiB (default: 1024)")
    check.set_defaults(run=_run_check, starts_processes=True)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="wall-clock seconds for the whole run (default: 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _read(path: str, what: str) -> str:
    from flowmend.errors import UserError

    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise UserError(f"{what} not found", where=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {what}: {err}", where=path) from None


def _limits(args):
    from flowmend.errors import UserError
    from flowmend.sandbox import Limits

    try:
        return Limits(timeout_s=args.timeout, memory_mb=args.memory_mb)
    except ValueError as err:
        raise UserError(str(err), where="command line") from None


def _run_exec(args) -> int:
    import json

    from flowmend.sandbox import Sandbox

    source = _read(args.file, "program")
    limits = _limits(args)
    with Sandbox(workers=1, max_inflight=1) as sandbox:
        result = sandbox.run(source, limits=limits)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        _print_exec(result)
    return 0 if result.ok else 1


def _run_check(args) -> int:
    import json

    from flowmend.errors import UserError
    from flowmend.sandbox import Sandbox

    code = _read(args.code, "code")
    try:
        tests = json.loads(_read(args.tests, "tests"))
    except ValueError as err:
        raise UserError(f"not valid JSON: {err}", where=args.tests) from None
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise UserError("expected a JSON list of test snippets (strings)", where=args.tests)
    if args.test_timeout <= 0:
        raise UserError("--test-timeout must be positive", where="command line")
    limits = _limits(args)
    with Sandbox(workers=1, max_inflight=1) as sandbox:
        result = sandbox.check(code, tests, limits=limits, test_timeout_s=args.test_timeout)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("#", "status", "error", "message")
        for test in result.results:
            table.add_row(str(test.index), test.status, test.error_type or "",
                          (test.message or "")[:80])
        console = Console(highlight=False)
        console.print(table)
        console.print(f"[bold]{result.status}[/]: {result.passed}/{result.total} passed "
                      f"in {result.run.wall_s:.2f} s")
        _warn(result.run.isolation)
    return 0 if result.all_passed else 1


def _print_exec(result) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    if result.stdout:
        console.out(result.stdout, end="")
    if result.stderr:
        Console(stderr=True).out(result.stderr, end="")
    detail = f" ({result.error_type}: {result.error_message})" if result.error_type else ""
    console.print(f"[bold]{result.status}[/]{detail}, exit code {result.exit_code}, "
                  f"{result.wall_s:.3f} s" + (", output truncated" if result.truncated else ""),
                  markup=True)
    _warn(result.isolation)


def _warn(isolation: dict) -> None:
    if isolation.get("warning"):
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]{isolation['warning']}[/]")
