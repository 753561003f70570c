"""`flowmend report`: REPORT.md, the cost–accuracy and γ/κ plots, and the table in the terminal.

Reads only what a run folder holds (run.json, results.jsonl), so a report can be made again at
any time, from a finished run or one still going. Several run folders (the same suite at other
budgets) go into one report: each (method, budget) is one point of the cost–accuracy plot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowmend.bench import metrics
from flowmend.bench._store import RESULTS, RUN, read_results
from flowmend._files import write_atomically
from flowmend.errors import UserError


@dataclass(frozen=True)
class Run:
    """One run folder, read back."""

    path: Path
    info: dict[str, Any]
    records: list[dict]

    @property
    def identity(self) -> dict[str, Any]:
        return self.info.get("identity", {})

    @property
    def label(self) -> str:
        budget = self.identity.get("budget") or {}
        parts = [f"{k} {v}" for k, v in budget.items() if v is not None and k in ("calls", "tokens")]
        return ", ".join(parts) or self.path.name

    def baselines(self) -> list[str]:
        return [m["name"] for m in self.identity.get("methods", []) if m.get("baseline")]

    def method_order(self) -> list[str]:
        names = [m["name"] for m in self.identity.get("methods", [])]
        seen = [r["method"] for r in self.records]
        return names + [m for m in dict.fromkeys(seen) if m not in names]


def load_run(path: Path) -> Run:
    path = Path(path)
    if not (path / RUN).is_file():
        raise UserError("not a run folder (no run.json)", where=str(path))
    try:
        info = json.loads((path / RUN).read_text())
    except ValueError:
        raise UserError("run.json is not JSON", where=str(path / RUN)) from None
    records = read_results(path)
    if not records:
        raise UserError(f"no results yet ({RESULTS} is empty or missing)", where=str(path))
    return Run(path, info, records)


def summaries_of(run: Run, *, resamples: int = 10_000) -> list[metrics.MethodSummary]:
    seed = int(run.identity.get("seed") or 0)
    found = metrics.summarize(run.records, baselines=run.baselines(), resamples=resamples,
                              seed=seed)
    order = {m: i for i, m in enumerate(run.method_order())}
    return sorted(found, key=lambda s: order.get(s.method, len(order)))


# ---------------------------------------------------------------- formatting


def _pct(e: metrics.Figure, *, ci: bool = True, signed: bool = False) -> str:
    if e.value is None:
        return "–"
    sign = "+" if signed else ""
    text = f"{100 * e.value:{sign}.1f}%"
    if ci and e.lo is not None:
        text += f" [{100 * e.lo:{sign}.1f}, {100 * e.hi:{sign}.1f}]"
    return text


def _num(e: metrics.Figure, digits: int = 1) -> str:
    return "–" if e.value is None else f"{e.value:,.{digits}f}"


def _with_n(text: str, n: int) -> str:
    return f"{text} (n={n})"


COLUMNS = ("method", "pass@1 [95% CI]", "Δ vs best baseline [95% CI]", "success ≤ budget",
           "iterations", "calls/task", "tokens/task", f"tokens vs {metrics.SPEND_REFERENCE}",
           "cost/task", "calls/solved", "tokens/solved", "cost/solved", "γ", "γ pooled",
           "S ties", "κ", "κ budget-cut", "regret", "patch size", "applied", "errors")


def table_rows(summaries: Sequence[metrics.MethodSummary]) -> list[list[str]]:
    best = metrics.best_baseline(summaries)
    rows = []
    for s in summaries:
        if s.vs_best_baseline is not None:
            delta = _with_n(_pct(s.vs_best_baseline, signed=True), s.vs_best_baseline.n)
        else:
            delta = "best baseline" if best is not None and s.method == best.method else "–"
        name = s.method + (" (baseline)" if s.baseline else "")
        rows.append([
            name,
            _with_n(_pct(s.pass_at_1), s.pass_at_1.n),
            delta,
            _pct(s.success_under_budget, ci=False),
            _num(s.iterations, 2),
            _num(s.calls, 1),
            _num(s.tokens, 0),
            _spend(s),
            _num(s.cost, 1),
            _num(s.calls_per_solved, 1),
            _with_n(_num(s.tokens_per_solved, 0), s.tokens_per_solved.n),
            _num(s.cost_per_solved, 1),
            _with_n(_num(s.gamma, 3), s.gamma.n),
            _with_n(_num(s.gamma_pooled, 3), s.gamma_pooled.n),
            _with_n(_pct(s.score_ties, ci=False), s.score_ties.n),
            _with_n(_num(s.kappa, 3), s.kappa.n),
            str(s.kappa_budget_cut),
            _with_n(_num(s.regret, 3), s.regret.n),
            _with_n(_num(s.patch_size, 1), s.patch_size.n),
            _with_n(_pct(s.applied_share, ci=False), s.applied_share.n),
            str(s.errors),
        ])
    return rows


def _spend(s: metrics.MethodSummary) -> str:
    if s.spend_ratio is None or s.spend_ratio.value is None:
        return "–"
    text = f"{100 * s.spend_ratio.value:.0f}%"
    return text if s.spend_matched else f"{text} (not within ±{100 * metrics.SPEND_TOLERANCE:.0f}%)"


def spend_lines(summaries: Sequence[metrics.MethodSummary]) -> list[str]:
    """Each method's mean spend against the reference method's, said plainly where it is not
    within the tolerance: a comparison at unequal spend is not the one the claim is about."""
    ref = metrics.SPEND_REFERENCE
    rated = [s for s in summaries if s.method != ref and s.spend_ratio is not None
             and s.spend_ratio.value is not None]
    if not rated:
        return [f"No spend comparison: the run has no `{ref}` records (or it spent nothing)."]
    lines = []
    for s in rated:
        ratio = s.spend_ratio.value
        verdict = "within" if s.spend_matched else "**not within**"
        lines.append(f"- `{s.method}` spent {100 * ratio:.0f}% of `{ref}`'s tokens per task "
                     f"(n={s.spend_ratio.n} tasks): {verdict} ±{100 * metrics.SPEND_TOLERANCE:.0f}%.")
    return lines


def ablation_lines(run: Run, summaries: Sequence[metrics.MethodSummary], *,
                   resamples: int) -> list[str]:
    """κ of the optimizer against random choice (paired over tasks), and γ beside the regret
    of S_F's selection and of the oracle's."""
    by = {s.method: s for s in summaries}
    records = {m: [r for r in run.records if r["method"] == m] for m in by}
    seed = int(run.identity.get("seed") or 0)
    lines = []
    model, chance = metrics.SPEND_REFERENCE, "flowmend-random"
    if model in by and chance in by:
        d = metrics.kappa_paired(records[model], records[chance], resamples=resamples, seed=seed)
        if d.value is None:
            lines.append(f"- κ({model}) − κ({chance}): no task where both counted an iteration.")
        else:
            lines.append(
                f"- κ({model}) {_num(by[model].kappa, 3)} (n={by[model].kappa.n}) against "
                f"κ({chance}) {_num(by[chance].kappa, 3)} (n={by[chance].kappa.n}); paired "
                f"per-task difference {d.value:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}] (n={d.n} tasks, "
                f"{resamples:,} resamples). {chance} makes no optimizer calls: it spent "
                f"{_spend(by[chance])} of {model}'s tokens.")
    if "oracle-select" in by:
        oracle = by["oracle-select"]
        for s in summaries:
            if s.regret.value is None or s.method == "oracle-select":
                continue
            lines.append(f"- `{s.method}`: γ {_num(s.gamma, 3)} (n={s.gamma.n} pairs), regret "
                         f"{_num(s.regret, 3)} (n={s.regret.n}); oracle-select's regret "
                         f"{_num(oracle.regret, 3)} (n={oracle.regret.n}), pass@1 "
                         f"{_pct(oracle.pass_at_1, ci=False)} against {_pct(s.pass_at_1, ci=False)}.")
    return lines or ["No ablation in this run (flowmend-random, oracle-select)."]


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- plots


def plot_cost_accuracy(runs: Sequence[Run], summaries: Sequence[Sequence[metrics.MethodSummary]],
                       path: Path) -> Path:
    """pass@1 (Wilson 95% bars) against mean tokens per task: one point per method and budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    markers = "os^Dv<>p"
    colours: dict[str, str] = {}
    for r, (run, sums) in enumerate(zip(runs, summaries)):
        marker = markers[r % len(markers)]
        by_cost = sorted((s.tokens.value or 0.0, s.method) for s in sums)
        rank = {method: i for i, (_, method) in enumerate(by_cost)}
        for s in sums:
            if s.pass_at_1.value is None or s.tokens.value is None:
                continue
            i = rank[s.method]  # neighbours along the cost axis alternate above and below
            colour = colours.setdefault(s.method, f"C{len(colours) % 10}")
            y, lo, hi = s.pass_at_1.value, s.pass_at_1.lo, s.pass_at_1.hi
            ax.errorbar([s.tokens.value], [100 * y], yerr=[[100 * (y - lo)], [100 * (hi - y)]],
                        fmt=marker, color=colour, capsize=3, alpha=0.85)
            # Points of other budgets, or of neighbouring methods, may coincide: stagger labels.
            ax.annotate(f"{s.method} n={s.pass_at_1.n}", (s.tokens.value, 100 * y),
                        textcoords="offset points",
                        xytext=(6, 4 - 10 * r - (12 * len(runs) if i % 2 else 0)), fontsize=7,
                        color=colour)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", ls="", label=m) for m, c in colours.items()]
    if len(runs) > 1:
        handles += [Line2D([], [], color="grey", marker=markers[r % len(markers)], ls="",
                           label=f"budget: {run.label}") for r, run in enumerate(runs)]
    ax.set_xlabel("tokens per task (mean, program + optimizer)")
    ax.set_ylabel("pass@1 on hidden tests (%)")
    title = ", ".join(dict.fromkeys(suite_label(r) for r in runs))
    ax.set_title(f"Cost and accuracy: {title}", fontsize=10)
    ax.set_ylim(bottom=0)
    xs = [s.tokens.value for sums in summaries for s in sums if s.tokens.value is not None]
    ax.set_xlim(0, 1.2 * max(xs) if xs and max(xs) > 0 else 1)  # room for the labels
    ax.grid(alpha=0.3)
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_gamma_kappa(run: Run, summaries: Sequence[metrics.MethodSummary], path: Path) -> Path:
    """Left: γ per method (n = candidate pairs). Right: κ per iteration (n = iterations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    names = [s.method for s in summaries]
    values = [s.gamma.value if s.gamma.value is not None else 0.0 for s in summaries]
    bars = left.bar(names, values, color=[f"C{i % 10}" for i in range(len(names))])
    for bar, s in zip(bars, summaries):
        text = "no pairs" if s.gamma.value is None else f"{s.gamma.value:.2f}\nn={s.gamma.n}"
        left.annotate(text, (bar.get_x() + bar.get_width() / 2, max(bar.get_height(), 0)),
                      ha="center", va="bottom", fontsize=7)
    left.axhline(0, color="black", lw=0.8)
    left.set_ylim(-0.5, 0.6)
    left.set_ylabel("γ (verifier alignment, 0.5 = perfect)")
    left.set_title("γ over candidate pairs with different hidden utility", fontsize=9)
    plotted = 0
    for i, s in enumerate(summaries):
        by_iter = metrics.kappa_by_iteration([r for r in run.records if r["method"] == s.method])
        if not by_iter:
            continue
        ks = list(by_iter)
        right.plot(ks, [by_iter[k].value for k in ks], "o-", color=f"C{i % 10}",
                   label=f"{s.method} (κ={_num(s.kappa, 2)}, n={s.kappa.n})")
        for k in ks:  # each series' labels a line higher, so equal values stay legible
            right.annotate(f"n={by_iter[k].n}", (k, by_iter[k].value), fontsize=6,
                           color=f"C{i % 10}", textcoords="offset points",
                           xytext=(3, 3 + 8 * plotted))
        plotted += 1
    right.set_ylim(-0.05, 1.05)
    right.set_xlabel("iteration")
    right.set_ylabel("κ (share of iterations with an improving proposal)")
    right.set_title("κ per iteration", fontsize=9)
    if plotted:
        right.legend(fontsize=7)
        right.xaxis.get_major_locator().set_params(integer=True)
    else:
        right.text(0.5, 0.5, "no loop iterations in this run", ha="center", va="center",
                   transform=right.transAxes, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def suite_label(run: Run) -> str:
    ident = run.identity
    return f"{ident.get('suite', '?')} {ident.get('split', '')}".strip()


# ---------------------------------------------------------------- the report


def _method_lines(ident: dict) -> list[str]:
    lines = []
    for m in ident.get("methods", []):
        config = m.get("config", m)  # flowmend.method/1 runs list the config beside the name
        patches = ", ".join(p["operator"] for p in config.get("pre_patches", [])) or "none"
        lines.append(f"- `{m['name']}`{' (baseline)' if m.get('baseline') else ''}: "
                     f"{m.get('description', '')} (iterations {config.get('iterations')}, "
                     f"proposals {config.get('proposals')}, mode {config.get('mode')}, "
                     f"pre-patches {patches})")
    return lines


def isolation_line(run: Run) -> str:
    """What the sandbox isolated candidates with; a weak run says so in bold."""
    from flowmend.bench._bench import weak_isolation_warning

    found = run.info.get("isolation") or {}
    mode = found.get("mode") or run.identity.get("isolation")
    if mode is None:
        return "- sandbox isolation: not recorded (the run predates its recording)"
    if found.get("weak") or mode == "rlimits":
        return f"- sandbox isolation: `{mode}`. **{weak_isolation_warning(found)}**"
    return f"- sandbox isolation: `{mode}` ({', '.join(found.get('namespaces', [])) or 'namespaces'})"


def _performance_lines(run: Run) -> list[str]:
    perf = run.info.get("performance")
    if not perf:
        return ["No performance figures in run.json (the run has not finished a session yet)."]
    lines = []
    for key, label, unit in (
        ("wall_s", "wall time of the last session", "s"),
        ("completion_tokens", "completion tokens generated", ""),
        ("engine_busy_s", "engine busy time", "s"),
        ("tokens_per_busy_s", "generation throughput per engine-busy second", "tokens/s"),
        ("tokens_per_wall_s", "generation throughput per wall second", "tokens/s"),
        ("outside_model_share", "share of wall time outside the model", ""),
        ("hidden_check_s", "time scoring outputs on hidden tests (summed over jobs)", "s"),
        ("engine_calls", "engine calls (batches)", ""),
        ("failed_engine_calls", "failed engine calls", ""),
        ("mean_batch", "mean requests per engine call", ""),
        ("mean_running", "mean requests running per engine step (vLLM's continuous batch)", ""),
        ("raw_tokens_per_s", "raw vLLM on the same requests, all at once (--raw-baseline)",
         "tokens/s"),
        ("bench_over_raw", "bench throughput per wall second over raw vLLM's", ""),
    ):
        value = perf.get(key)
        if value is None:
            continue
        if key in ("outside_model_share", "bench_over_raw"):
            text = f"{100 * value:.1f}%"
        elif isinstance(value, float):
            text = f"{value:,.1f} {unit}".strip()
        else:
            text = f"{value:,} {unit}".strip()
        lines.append(f"- {label}: {text}")
    if perf.get("note"):
        lines.append(f"- note: {perf['note']}")
    return lines


def write_report(dirs: Sequence[Path], *, out: Path | None = None, resamples: int = 10_000
                 ) -> tuple[Path, list[tuple[Run, list[metrics.MethodSummary]]]]:
    """Write REPORT.md and the PNGs into ``out`` (default: the first run folder)."""
    runs = [load_run(Path(d)) for d in dirs]
    out = Path(out or runs[0].path)
    out.mkdir(parents=True, exist_ok=True)
    sums = [summaries_of(r, resamples=resamples) for r in runs]
    cost_png = plot_cost_accuracy(runs, sums, out / "cost_accuracy.png")
    parts = ["# flowmend benchmark report", ""]
    for i, (run, summary) in enumerate(zip(runs, sums)):
        gk_png = plot_gamma_kappa(run, summary, out / f"gamma_kappa{'' if i == 0 else f'_{i}'}.png")
        ident = run.identity
        tasks = len({r["task_id"] for r in run.records})
        parts += [
            f"## {suite_label(run)}: {run.label} ({run.path})", "",
            f"- tasks: {tasks} (split scheme {ident.get('split_scheme', 'hash')}, "
            f"limit {ident.get('limit')}), seed workflow `{ident.get('seed_workflow')}`",
            f"- models: program `{ident.get('model')}`, optimizer `{ident.get('optimizer_model')}`,"
            f" backend `{ident.get('backend')}`, seed {ident.get('seed')}",
            f"- per-task budget: {json.dumps(ident.get('budget'))}",
            isolation_line(run),
            *_method_lines(ident),
            "",
            markdown_table(table_rows(summary)),
            "",
            "pass@1: share of tasks whose final output passes every hidden test (Wilson 95% "
            "interval). Δ: paired bootstrap over the tasks both methods ran "
            f"({resamples:,} resamples, seed {ident.get('seed', 0)}), against the baseline with "
            "the highest pass@1. Iterations, calls, tokens and cost per task: means over the same "
            "n tasks as pass@1; per solved: over the n solved. Tokens vs "
            f"{metrics.SPEND_REFERENCE}: mean tokens per task over its, on common tasks. "
            "U (γ, κ, regret) is the share of hidden tests that are not visible checks (on MBPP "
            "the visible assert is left out); pass@1 counts every hidden test. γ: per iteration "
            "(candidates one selection chose among), n = pairs with different U; a tie in S "
            "counts as a disagreement, as the definition reads, and S ties gives their share; γ "
            "pooled pairs every candidate of a run. κ: n = loop iterations that had budget to "
            "propose and whose incumbent could still improve; κ budget-cut: iterations whose "
            "proposals the budget refused (not in n). Regret: U(best candidate) − U(final "
            "output), n = runs. Patch size: AST nodes changed per executed proposal; applied: "
            "share of proposals that applied (n = proposals tried).",
            "",
            "### Spend against flowmend",
            "",
            *spend_lines(summary),
            "",
            "### Ablations",
            "",
            *ablation_lines(run, summary, resamples=resamples),
            "",
            f"![γ and κ]({gk_png.name})",
            "",
            "### Performance",
            "",
            *_performance_lines(run),
            "",
        ]
    parts += ["## Cost and accuracy", "", f"![cost and accuracy]({cost_png.name})", ""]
    path = out / "REPORT.md"
    write_atomically(path, "\n".join(parts))
    return path, list(zip(runs, sums))


def _save(fig, path: Path) -> None:
    """A plot written all or nothing, like every other file of a report."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png")
    write_atomically(path, buffer.getvalue())
