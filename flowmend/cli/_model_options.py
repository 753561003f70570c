"""Command-line options that choose the program and optimizer models, shared by every verb."""

from __future__ import annotations

import argparse

from flowmend.llm._config import KINDS


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """`--backend/--model/--optimizer-model/--base-url/--replay/--record` on `parser`."""
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


def model_config(model: str, *, backend: str, seed: int = 0, base_urls=(), replay=None,
                 record=None):
    """The `ModelConfig` for `model` on `backend`: replayed from `replay`, or recorded into
    `record` around the real backend. Shared by `repair` and `bench`."""
    from flowmend.llm._config import ModelConfig

    if replay or backend == "replay":
        return ModelConfig(kind="replay", model=model, replay_path=replay)
    inner = ModelConfig(kind=backend, model=model, seed=seed, base_urls=tuple(base_urls))
    if record:
        return ModelConfig(kind="replay", model=model, replay_path=record, record=inner)
    return inner


def model_configs(args: argparse.Namespace):
    """The program and optimizer `ModelConfig`s the options name (same object when shared)."""
    from flowmend.errors import UserError

    if args.replay and args.record:
        raise UserError("--replay and --record exclude each other")
    if args.backend == "replay" and not args.replay:
        raise UserError("--backend replay needs --replay FILE")

    def config(model: str):
        return model_config(model, backend=args.backend, seed=args.model_seed,
                            base_urls=args.base_url or (), replay=args.replay, record=args.record)

    program = config(args.model)
    optimizer = program if args.optimizer_model in (None, args.model) else config(args.optimizer_model)
    return program, optimizer
