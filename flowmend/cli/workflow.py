"""The workflow verbs: `ops` (the operator library), `steps`, `apply` and `demo`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flowmend._files import write_files_atomically
from flowmend.cli._common import (add_workflow_options, clip, escape, load_workflow,
                                  print_json, project_config, workflow_options)
from flowmend.errors import UserError

def register(sub) -> None:
    """Add this package's verbs to the `flowmend` parser."""
    ops = sub.add_parser(
        "ops",
        help="list the operators: name, kind, description, argument schema",
        description="List the typed edit operators a repair can use, with their kind (prompt "
        "or structure), one-line description and the JSON schema of their arguments.",
    )
    ops.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    ops.add_argument("--doc", action="store_true", help="print each operator's examples as Markdown")
    ops.add_argument("--kind", choices=("prompt", "structure"), help="only operators of this kind")
    ops.add_argument("--library", action="append", default=None, metavar="SPEC",
                     help="list this library instead of the built-ins: builtin, a module name, "
                          "a .py file or a .json operator (repeatable; specs add up)")
    ops.set_defaults(run=run_ops)
    ops_verbs = ops.add_subparsers(dest="ops_verb", metavar="test")
    test = ops_verbs.add_parser(
        "test", help="gate a library: every operator's examples and fuzz properties",
        description="Run every operator of the library that SPEC... names through the same "
                    "example tests and fuzz properties the built-ins pass (parses, compiles, "
                    "text outside the edit unchanged, idempotence, round trips). Prints what "
                    "failed; exit code 1 if anything did, 0 if the library passes.",
    )
    test.add_argument("specs", nargs="+", metavar="SPEC",
                      help="builtin, a module name, a .py file or a .json operator")
    test.add_argument("--fuzz-examples", type=int, default=20, metavar="N",
                      help="random applications per operator (default 20; 0: examples only)")
    test.add_argument("--seed", type=int, default=0, help="the fuzzer's seed (default 0)")
    test.add_argument("--json", action="store_true", help="print the failures as JSON")
    test.set_defaults(run=run_ops_test)

    steps = sub.add_parser(
        "steps",
        help="show a workflow's steps, prompts and data flow",
        description="Parse a workflow and show its steps (the LLM call sites reachable from the "
        "entry function): id, line, callee, prompt, the variables each reads and the steps its "
        "output feeds. With --menu, also the numbered menu of applicable edits.",
    )
    steps.add_argument("workflow", metavar="WORKFLOW.py", help="the workflow to read")
    add_workflow_options(steps)
    steps.add_argument("--menu", action="store_true", help="also list the applicable edits")
    steps.add_argument("--explain", action="store_true",
                       help="also say which project config and conventions were used, and why "
                            "each call is or is not a step")
    steps.add_argument("--json", action="store_true", help="print JSON (keys: entry, steps, ...)")
    steps.set_defaults(run=run_steps)

    apply = sub.add_parser(
        "apply",
        help="apply a patch (or a list of patches) to a workflow and print the diff",
        description="Apply PATCH.json (one flowmend.patch/1 object or a list, applied in "
        "order) to WORKFLOW.py and print the unified diff. Nothing is written unless -o or "
        "--in-place is given; on any error nothing is written at all (exit code 2).",
    )
    apply.add_argument("workflow", metavar="WORKFLOW.py", help="the workflow to edit")
    apply.add_argument("patch", metavar="PATCH.json", help="one patch object or a list of them")
    where = apply.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="OUT", help="write the edited workflow to OUT")
    where.add_argument("--in-place", action="store_true", help="overwrite WORKFLOW.py")
    add_workflow_options(apply)
    apply.add_argument("--json", action="store_true", help="print JSON: diff, source, written")
    apply.set_defaults(run=run_apply)

    demo = sub.add_parser(
        "demo",
        help="show the steps of the seed workflow and apply an example patch",
        description="Offline, no model: show the steps and data flow of the shipped "
        "plan_then_code seed (or --workflow), and apply an example patch (wrap-in-retry on the "
        "last step), printing the diff. Nothing is written.",
    )
    demo.add_argument(
        "--workflow", metavar="WORKFLOW.py", help="another workflow to show (default: the seed)"
    )
    add_workflow_options(demo)
    demo.add_argument("--json", action="store_true", help="print JSON: steps, patch, diff")
    demo.set_defaults(run=run_demo)


# --- ops -------------------------------------------------------------------------------------


def run_ops(args: argparse.Namespace) -> int:
    from flowmend.engine._library import load_library
    from flowmend.engine._schema import target_schema

    library = load_library(args.library or ["builtin"])
    operators = [c for c in library.operators() if args.kind in (None, c.kind)]
    if args.json:
        data = [
            {
                "name": c.name,
                "kind": c.kind,
                "description": c.DESCRIPTION,
                "args_schema": c.args_schema(),
                "target_schema": target_schema(c),
                "idempotent": bool(getattr(c, "IDEMPOTENT", False)),
                "examples": len(c.EXAMPLES),
            }
            for c in operators
        ]
        print_json(data)
        return 0
    if args.doc:
        sys.stdout.write(_ops_markdown(operators))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(operators)} operators, library {library.digest[:12]}",
                  show_lines=True)
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("kind")
    table.add_column("description")
    table.add_column("arguments")
    for c in operators:
        table.add_row(c.name, c.kind, c.DESCRIPTION, _args_summary(c.args_schema()) or "-")
    Console().print(table)
    return 0


def run_ops_test(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from flowmend.engine._library import load_library
    from flowmend.operators import check_library

    if args.fuzz_examples < 0:
        raise UserError(f"--fuzz-examples must be 0 or more, got {args.fuzz_examples}")
    library = load_library(args.specs)
    err = Console(stderr=True)
    with Progress(TextColumn("ops test {task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("ops", total=len(library), name="")
        failures = check_library(
            library, fuzz_examples=args.fuzz_examples, seed=args.seed,
            on_operator=lambda name: progress.update(task, advance=1, name=name))
    if args.json:
        print_json({"library": library.to_json(), "failures": [f.to_json() for f in failures]})
        return 1 if failures else 0
    from rich.table import Table

    out = Console(highlight=False)
    if not failures:
        out.print(f"[green]passed[/]: {len(library)} operator(s), library {library.digest[:12]} "
                  f"({', '.join(library.names())})")
        return 0
    table = Table(title=f"{len(failures)} failure(s) in library {library.digest[:12]}",
                  show_lines=True)
    for column in ("operator", "case", "what failed"):
        table.add_column(column, overflow="fold")
    for f in failures:
        table.add_row(f.operator, f.case, escape(f.detail))
    out.print(table)
    return 1


def _args_summary(schema: dict) -> str:
    lines = []
    for name, prop in schema.get("properties", {}).items():
        if "enum" in prop:
            kind = "|".join(json.dumps(v) for v in prop["enum"])
        else:
            kind = prop.get("type", "?")
            kind = "/".join(kind) if isinstance(kind, list) else kind
        if "minimum" in prop:
            kind += f" {prop['minimum']}..{prop['maximum']}"
        default = f" = {json.dumps(prop['default'])}" if "default" in prop else ""
        lines.append(f"{name}: {kind}{default}")
    return "\n".join(lines)


def _ops_markdown(operators) -> str:
    import textwrap

    out = ["# flowmend operators\n"]
    for c in operators:
        out.append(f"\n## `{c.name}` ({c.kind})\n\n{c.DESCRIPTION}\n")
        props = c.args_schema().get("properties", {})
        if props:
            out.append("\n| argument | type | default | meaning |\n| --- | --- | --- | --- |\n")
            summary = dict(
                line.split(": ", 1) for line in _args_summary(c.args_schema()).splitlines()
            )
            for name, prop in props.items():
                kind = summary[name].split(" = ")[0].replace("|", "\\|")  # a table cell
                default = json.dumps(prop["default"]) if "default" in prop else "required"
                meaning = prop.get("description", "").replace("|", "\\|")
                out.append(f"| `{name}` | {kind} | {default} | {meaning} |\n")
        for i, case in enumerate(c.EXAMPLES, 1):
            args = json.dumps(case.args) if case.args else "{}"
            target = json.dumps(case.target) if case.target else "first site"
            out.append(f"\nExample {i}: target {target}, args `{args}`\n\n")
            out.append("```python\n" + textwrap.dedent(case.before).strip() + "\n```\n\nbecomes\n\n")
            out.append("```python\n" + textwrap.dedent(case.after or "").strip() + "\n```\n")
        for case in c.NOT_APPLICABLE:
            out.append("\nNot applicable:\n\n```python\n" + textwrap.dedent(case.before).strip() + "\n```\n")
    return "".join(out)


# --- steps -----------------------------------------------------------------------------------


def run_steps(args: argparse.Namespace) -> int:
    wf = load_workflow(args.workflow, args)
    items = _menu_or_empty(wf) if args.menu else None
    explained = _explain(args, wf) if args.explain else None
    if args.json:
        data = wf.to_json()
        if items is not None:
            data["menu"] = [item.to_json() for item in items]
        if explained is not None:
            data["explain"] = explained
        print_json(data)
        return 0
    from rich.console import Console

    console = Console()
    if explained is not None:
        _print_explained(console, explained)
    _print_steps(console, wf)
    if items is not None:
        _print_menu(console, items)
    return 0


def _explain(args: argparse.Namespace, wf) -> dict:
    """Which config and conventions were used, and why; why each call is or is not a step."""
    from flowmend.engine._steps import explain_calls

    config = project_config(args, args.workflow)
    if args.step_callees:
        source = "--step-callee on the command line (overrides any project config)"
    elif config is not None and config.conventions:
        source = f"the project config {config.path}"
    else:
        source = "flowmend's default (no project config names conventions)"
    return {
        "config": config.path if config is not None else None,
        "conventions_from": source,
        "conventions": [c.to_json() for c in wf.conventions],
        "calls": [n.to_json() for n in explain_calls(wf)],
    }


def _print_explained(console, explained: dict) -> None:
    console.print(f"config: {escape(explained['config'] or 'none found')}")
    console.print(f"conventions from {escape(explained['conventions_from'])}:")
    for c in explained["conventions"]:
        prompt = ", ".join(c["prompt"]) if c["prompt"] else "#0 or prompt="
        params = ", ".join(c["params"]) if c["params"] is not None else "any"
        console.print(f"  {escape(c['name'])}: callees {escape(', '.join(c['callees']))}; "
                      f"prompt {escape(prompt)}; params {escape(params)}; "
                      f"answer {escape(c['answer'])}")
    for n in explained["calls"]:
        verdict = f"step {n['step']}" if n["step"] else "not a step"
        console.print(f"  line {n['line']} {escape(n['callee'])}(...) in {escape(n['function'])}: "
                      f"{verdict}: {escape(n['why'])}")


def _menu_or_empty(wf):
    from flowmend.engine._menu import menu

    return menu(wf)


def _print_steps(console, wf) -> None:
    from rich.table import Table

    fn = wf.entry_function
    kind = "async " if fn.is_async else ""
    title = f"{wf.path or 'workflow'}: entry {kind}{wf.entry}, {len(wf.steps)} step(s)"
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("id", style="bold cyan", no_wrap=True)
    table.add_column("line", justify="right")
    table.add_column("call")
    table.add_column("prompt")
    table.add_column("reads")
    table.add_column("feeds")
    for step in wf.steps:
        call = ("await " if step.awaited else "") + step.callee
        if step.function != wf.entry:
            call += f"\nin {step.function}"
        if step.params:
            call += "\n" + ", ".join(f"{k}={v}" for k, v in step.params)
        prompt = "-"
        if step.prompt is not None:
            p = step.prompt
            head = p.kind + (f" {p.constant}" if p.constant else "")
            if p.module:
                head += f" in {Path(p.module).name}"
            if p.variable:
                head += f" held by {p.variable}"
            if len(p.shared_by) > 1:
                head += f" (shared by {', '.join(p.shared_by)})"
            body = clip(p.text.replace("\n", "\\n")) if p.text is not None else ", ".join(p.placeholders)
            if p.note:
                body += f" ({p.note})"
            prompt = f"[dim]{head}[/]\n{escape(body)}"
        feeds = ", ".join(step.feeds) or "-"
        if step.flow_caveat:
            feeds += f"\n[yellow]approximate: {escape(step.flow_caveat)}[/]"
        table.add_row(step.id, str(step.line), escape(call), prompt,
                      escape(", ".join(step.reads) or "-"), feeds)
    console.print(table)


def _print_menu(console, items) -> None:
    from rich.table import Table

    table = Table(title=f"{len(items)} applicable edit(s)", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("label", style="cyan")
    table.add_column("kind")
    for i, item in enumerate(items, 1):
        table.add_row(str(i), escape(item.label), item.kind)
    console.print(table)


def run_apply(args: argparse.Namespace) -> int:
    from flowmend.engine._operator import Applied
    from flowmend.engine._patch import apply_patches, read_patches

    wf = load_workflow(args.workflow, args)
    patches = read_patches(args.patch)
    result = apply_patches(wf, patches)
    if not isinstance(result, Applied):
        detail = " ".join(result.detail.split())
        raise UserError(f"{result.reason.value}: {detail}", where=args.patch)
    written = None
    if result.files and args.output:
        raise UserError(f"this edit changes {', '.join(result.files)} too: write it with "
                        "--in-place (both files, or neither), or apply without -o to see the diff",
                        where=args.patch)
    if args.output or args.in_place:
        written = args.workflow if args.in_place else args.output
        # The workflow and every prompt module the edit changed: all written, or none.
        write_files_atomically({written: result.source, **result.files})
    if args.json:
        print_json({"changed": bool(result.diff), "diff": result.diff,
                     "source": result.source, "written": written,
                     "files": sorted(result.files) if written else []})
        return 0
    _print_diff(result.diff)
    from rich.console import Console

    note = Console(stderr=True, highlight=False)
    if not result.diff:
        note.print("no change")
    if written:
        note.print(f"wrote {', '.join([written, *result.files])}")
    return 0


def _print_diff(diff: str) -> None:
    if not diff:
        return
    if not sys.stdout.isatty():
        sys.stdout.write(diff)  # exactly the unified diff, for `patch` and for pipes
        return
    from rich.console import Console
    from rich.syntax import Syntax

    Console().print(Syntax(diff, "diff", theme="ansi_dark", word_wrap=True))


# --- demo ------------------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    from flowmend.engine._menu import menu
    from flowmend.engine._operator import Applied
    from flowmend.engine._patch import apply_patch

    if args.workflow:
        path = _display_path(Path(args.workflow))
        wf = load_workflow(path, args)
    else:
        from flowmend import seeds
        from flowmend.engine._workflow import parse_workflow

        path = Path("plan_then_code.py")  # the shipped seed, as diff headers name it
        wf = parse_workflow(seeds.load("plan_then_code"), path=str(path), **workflow_options(args))
    items = menu(wf)
    if not items:
        raise UserError("no operator applies to this workflow", where=str(path))
    choice = _demo_choice(wf, items)
    result = apply_patch(wf, choice.patch)
    if not isinstance(result, Applied):
        raise UserError(f"{choice.label}: {result.reason.value}: {result.detail}", where=str(path))
    if args.json:
        print_json({"workflow": wf.to_json(), "menu": [i.label for i in items],
                     "patch": choice.patch.to_json(), "diff": result.diff})
        return 0
    from rich.console import Console
    from rich.syntax import Syntax

    console = Console()
    _print_steps(console, wf)
    console.print(f"\n{len(items)} applicable edits; applying [cyan]{escape(choice.label)}[/]:")
    console.print_json(json.dumps(choice.patch.to_json()))
    console.print(Syntax(result.diff, "diff", theme="ansi_dark", word_wrap=True))
    return 0


def _display_path(path: Path) -> Path:
    """`path` relative to the working directory when it lies below it (for diff headers)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _demo_choice(wf, items):
    """wrap-in-retry on the last step (`code` in the seed) if offered, retrying until the code
    compiles when that preset exists, else the first edit."""
    last = wf.steps[-1].id
    for item in items:
        if (item.patch.operator, item.patch.target.get("step"), item.patch.args.get("until")) \
                == ("wrap-in-retry", last, "compiles"):
            return item
    for wanted in (("wrap-in-retry", last), ("wrap-in-retry", None), (None, last)):
        for item in items:
            if wanted[0] in (None, item.patch.operator) and wanted[1] in (None, item.patch.target.get("step")):
                return item
    return items[0]
