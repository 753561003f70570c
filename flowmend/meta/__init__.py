"""The offline outer loop: the only place besides bench/ that may read hidden tests.

It learns the inner loop's set-up (seed workflow, loop shape, mode, optimizer menu, verifier
weights) with Optuna on train tasks, chooses on val, and reports on test once.
"""

from flowmend import _api

_api.public_api(__name__, globals(), {
    "_cache": ("EvalCache", "cache_key"),
    "_evaluate": ("EngineFailed", "Evaluator"),
    "_learned": ("LearnedSetup",),
    "_library": ("LibraryEvolution", "macro_digest", "propose_macros"),
    "_run": ("evolve_library", "learn", "open_evaluator", "report", "train"),
    "_space": ("SearchSpace", "Setup"),
    "_splits": ("META_SPLITS", "cut_train", "meta_split", "search_order", "split_digest"),
    "_train": ("MetaProgress", "Study", "TrainPlan"),
})
