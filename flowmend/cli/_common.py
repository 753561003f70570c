"""What every verb shares: reading the files a user names, the workflow and model options,
and printing JSON. Writing goes through `flowmend._files.write_atomically`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flowmend.errors import UserError

__all__ = [
    "DEFAULT_ENTRY", "DEFAULT_STEP_CALLEES", "LiveBar", "add_model_options",
    "add_workflow_options", "clip", "escape", "load_workflow", "model_configs", "print_json",
    "project_config", "read_text", "run_alone", "workflow_options",
]

DEFAULT_ENTRY = "solve"
DEFAULT_STEP_CALLEES = ("llm",)


def add_workflow_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--entry NAME`` and ``--step-callee PATTERN`` (repeatable) to a verb's parser.

    Both override the project config (``[tool.flowmend]`` in a pyproject.toml, or a
    flowmend.toml, found walking up from the workflow), which `project_config` reads.
    """
    parser.add_argument(
        "--entry",
        default=None,
        metavar="NAME",
        help="the workflow's entry function: a module-level function or Class.method "
        f"(default: the project config's, else {DEFAULT_ENTRY})",
    )
    parser.add_argument(
        "--step-callee",
        dest="step_callees",
        action="append",
        metavar="PATTERN",
        help="a call whose dotted callee matches PATTERN is a step; globs allowed "
        "(self.generate, self.ask_*); repeat for several (default: the project config's "
        "conventions, else llm)",
    )
    # The parser itself, so that config defaults apply only where a flag kept its default.
    parser.set_defaults(_workflow_parser=parser)


def project_config(args: argparse.Namespace, workflow: str | Path | None):
    """The project config nearest `workflow` (None: none found, or no workflow named), read
    once per command; its model names and options fill what the command line left at its
    default."""
    if "_project_config" in vars(args):
        return args._project_config
    from flowmend.engine._project import find_project_config

    config = find_project_config(workflow) if workflow is not None else None
    args._project_config = config
    parser = getattr(args, "_workflow_parser", None)
    if config is not None and parser is not None:
        wanted = dict(config.options)
        for role, dest in (("program", "model"), ("optimizer", "optimizer_model")):
            if role in config.models:
                wanted.setdefault(dest, config.models[role])
        for dest, value in wanted.items():
            if dest in vars(args) and getattr(args, dest) == parser.get_default(dest):
                setattr(args, dest, value)
    return config


def workflow_options(args: argparse.Namespace, workflow: str | Path | None = None) -> dict[str, Any]:
    """The `parse_workflow` keyword arguments: the command line's ``--entry`` and
    ``--step-callee``, else the project config's entry and conventions, else the defaults."""
    config = project_config(args, workflow)
    entry = getattr(args, "entry", None) or (config.entry if config else None) or DEFAULT_ENTRY
    callees = getattr(args, "step_callees", None)
    if not callees and config is not None and config.conventions:
        return {"entry": entry, "conventions": config.conventions}
    return {"entry": entry, "step_callees": tuple(callees or DEFAULT_STEP_CALLEES)}


def read_text(path: str | Path, what: str = "workflow") -> str:
    """A user-named UTF-8 file's text; a one-line `UserError` when it cannot be read."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} is a directory, not a file", where=str(path))
    try:
        # newline="": CRLF files stay CRLF, so edits written back leave every other byte alone.
        with open(p, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        raise UserError(f"no such {what} file", where=str(path)) from None
    except UnicodeDecodeError as err:
        raise UserError(f"{what} is not UTF-8 text (byte {err.start})", where=str(path)) from None
    except OSError as err:
        raise UserError(f"cannot read {what}: {err.strerror or err}", where=str(path)) from None


def load_workflow(path: str | Path, args: argparse.Namespace):
    """Read and parse the workflow a user named, with the verb's `--entry`/`--step-callee`."""
    from flowmend.engine._workflow import parse_workflow

    return parse_workflow(read_text(path), path=str(path), **workflow_options(args, path))


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """`--backend/--model/--optimizer-model/--base-url/--replay/--record` on `parser`."""
    from flowmend.llm._config import KINDS  # here, not at import: `evaluate` starts lighter

    group = parser.add_argument_group("models")
    group.add_argument("--backend", choices=KINDS, default="vllm",
                       help="how to reach the models (default: vllm, in-process)")
    group.add_argument("--model", default="smollm2",
                       help="program model: smollm2 (embedded default), gemma3-270m, "
                            "a model folder or a hub id")
    group.add_argument("--optimizer-model", default=None,
                       help="optimizer model (default: the program model, sharing its engine)")
    group.add_argument("--base-url", action="append", default=None, metavar="URL",
                       help="OpenAI-compatible server for --backend openai (repeatable: "
                            "requests are balanced over the servers)")
    group.add_argument("--replay", default=None, metavar="FILE",
                       help="answer from recorded completions (JSONL) instead of a model")
    group.add_argument("--record", default=None, metavar="FILE",
                       help="record every completion of the chosen backend to FILE (JSONL)")
    group.add_argument("--model-seed", type=int, default=0, help="engine seed (default 0)")


def model_configs(args: argparse.Namespace):
    """The program and optimizer `ModelConfig`s the options name (same object when shared)."""
    from flowmend.errors import UserError

    if args.replay and args.record:
        raise UserError("--replay and --record exclude each other")
    if args.backend == "replay" and not args.replay:
        raise UserError("--backend replay needs --replay FILE")

    def config(model: str):
        from flowmend.llm._config import model_config

        return model_config(model, backend=args.backend, seed=args.model_seed,
                            base_urls=args.base_url or (), replay=args.replay, record=args.record)

    program = config(args.model)
    optimizer = program if args.optimizer_model in (None, args.model) else config(args.optimizer_model)
    return program, optimizer


def clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)





def run_alone(register, verb: str, argv: list[str] | None, prog: str) -> int:
    """One verb group run without building every other verb's parser (`python -m ...`)."""
    parser = argparse.ArgumentParser(prog=prog)
    register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args([verb, *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.run(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


class LiveBar:
    """A rich progress bar with the columns a verb names, status lines printed above it, and
    one task whose total, completion and fields `show` sets."""

    def __init__(self, console, columns, *, disable: bool):
        from rich.progress import Progress

        self.console = console
        self.progress = Progress(*columns, console=console, disable=disable, transient=False)
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def status(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def show(self, *, total: int, completed: int, **fields) -> None:
        if self.task is None:
            self.task = self.progress.add_task("", total=total, completed=completed, **fields)
        else:
            self.progress.update(self.task, total=total, completed=completed, **fields)
