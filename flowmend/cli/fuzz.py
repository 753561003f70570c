"""The `flowmend fuzz` verb: long Hypothesis runs of every operator's properties."""

from __future__ import annotations

import json
import re

from flowmend.errors import UserError

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def register(sub) -> None:
    """Add this package's verbs to the `flowmend` parser."""
    p = sub.add_parser(
        "fuzz",
        help="fuzz every operator on random workflows and check its properties",
        description=(
            "Generate random valid workflows (several steps, f-strings, constants, async, loops, "
            "comments) and random patches (operator x site x valid arguments), apply them and "
            "check the properties: the result parses and compiles, text outside the edit region "
            "is unchanged, idempotent operators are idempotent, add-step then remove-step and "
            "reorder-steps twice restore the source, and libcst round-trips every workflow. "
            "hypothesmith-generated modules check that the workflow parser fails only cleanly. "
            "Prints a table per operator; exit code 1 and the falsifying example if a property "
            "was violated."
        ),
    )
    p.add_argument("--examples", type=int, default=200, metavar="N",
                   help="random workflows per operator (default: 200)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed: same seed, same run (default: 0)")
    p.add_argument("--entry", default="solve", metavar="NAME",
                   help="entry function name of the generated workflows (default: solve)")
    p.add_argument("--step-callee", action="append", default=None, metavar="PATTERN",
                   help="callee that makes a call a step (repeatable); the first, a plain dotted "
                        "name, is what generated workflows call (default: llm)")
    p.add_argument("--convention", default="default", metavar="NAME",
                   help="write the generated workflows in this step convention: default "
                        "(llm(prompt, ...)), keyword (generate(instruction=...) answering a dict), "
                        "agent (thinking, answer = agent([...], instruction), agents[i]) or reply "
                        "(reviewer(prompt).content) (default: default)")
    p.add_argument("--operator", action="append", default=None, metavar="NAME",
                   help="fuzz only this operator (repeatable; default: all in the library)")
    p.add_argument("--library", action="append", default=None, metavar="SPEC",
                   help="the operators to fuzz: builtin, a module name, a .py file or a .json "
                        "operator (repeatable; default: builtin)")
    p.add_argument("--parser-examples", type=int, default=None, metavar="N",
                   help="hypothesmith modules for the parser check (default: --examples; 0 skips it)")
    p.add_argument("--no-shrink", action="store_true",
                   help="report the first falsifying example as found, without shrinking it (faster)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.set_defaults(run=run_fuzz)


def run_fuzz(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flowmend.engine._library import load_library
    from flowmend.operators import _fuzz

    if args.examples < 1:
        raise UserError(f"--examples must be at least 1, got {args.examples}")
    if args.parser_examples is not None and args.parser_examples < 0:
        raise UserError(f"--parser-examples must be 0 or more, got {args.parser_examples}")
    if not args.entry.isidentifier():
        raise UserError(f"--entry must be a function name, got {args.entry!r}")
    callees = tuple(args.step_callee or ("llm",))
    if not _DOTTED.match(callees[0]):
        raise UserError(
            f"--step-callee: the first pattern must be a plain dotted name that generated "
            f"workflows can call, got {callees[0]!r}"
        )
    from flowmend.operators.strategies import CONVENTIONS

    if args.convention not in CONVENTIONS:
        raise UserError(f"--convention: unknown convention {args.convention!r} "
                        f"(known: {', '.join(CONVENTIONS)})")
    if args.convention != "default" and args.step_callee:
        raise UserError("--step-callee and --convention exclude each other: a convention names "
                        "its own callees")
    library = load_library(args.library or ["builtin"])
    known = library.names()
    unknown = [n for n in args.operator or () if n not in known]
    if unknown:
        raise UserError(f"--operator: unknown operator(s) {', '.join(unknown)} (known: {', '.join(known)})")
    operators = list(dict.fromkeys(args.operator or known))
    parser_examples = args.examples if args.parser_examples is None else args.parser_examples

    err = Console(stderr=True)
    total = args.examples * len(operators) + parser_examples
    with Progress(TextColumn("fuzz"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=args.json and not err.is_terminal) as progress:
        task = progress.add_task("fuzz", total=total)
        report = _fuzz.fuzz(
            examples=args.examples, seed=args.seed, entry=args.entry, callees=callees,
            operators=operators, parser_examples=parser_examples,
            on_example=lambda: progress.advance(task), shrink=not args.no_shrink,
            library=library, convention=args.convention,
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print_table(report)
    return 1 if report.violated else 0


def _print_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    table = Table(title=f"flowmend fuzz: {report.examples} examples per operator, seed {report.seed}, "
                        f"convention {report.convention}, {report.seconds:.1f} s")
    table.add_column("operator", no_wrap=True)
    for column in ("tried", "applied", "not applicable", "invalid", "violations"):
        table.add_column(column, justify="right")
    rows = list(report.operators)
    if report.parser.tried or report.parser.falsifying:
        rows.append(report.parser)
    for s in rows:
        invalid = str(s.invalid)
        if s.invalid_reasons:
            invalid += " (" + ", ".join(f"{k} {v}" for k, v in sorted(s.invalid_reasons.items())) + ")"
        style = "bold red" if s.violations else None
        table.add_row(s.operator, str(s.tried), str(s.applied), str(s.not_applicable), invalid,
                      str(s.violations), style=style)
    out.print(table)
    for s in rows:
        if s.violations and s.falsifying:
            out.rule(f"[bold red]falsifying example: {s.operator}")
            out.print(s.falsifying, markup=False)
        elif s.falsifying:
            out.print(f"{s.operator}: {s.falsifying}", markup=False)
