"""Model configuration: which backend serves which model, and opening it.

The program model (what workflows call) and the optimizer model (what picks edits) each get a
`ModelConfig`. When both name the same model on the same backend, `open_models` loads one engine
and one broker for both, so their requests even share batches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from flowmend.llm._broker import Broker
from flowmend.llm._types import Backend, ModelError, PriceTable

KINDS = ("vllm", "openai", "transformers", "replay")


@dataclass(frozen=True)
class ModelConfig:
    """How to reach one model.

    Attributes:
        kind: the backend: "vllm" (in-process engine), "openai" (HTTP servers),
            "transformers" (plain batched generation), "replay" (recorded completions).
        model: an embedded model name (`smollm2`, `gemma3-270m`), a model folder or a hub id;
            for "openai", the name the servers serve.
        chat: force bare prompts through the chat template (True) or not (False);
            None decides from the model (embedded table, tokenizer).
        seed: engine seed (vllm, transformers).
        max_model_len: context length of the vllm engine.
        kv_cache_gib: KV-cache size of the vllm engine on a CPU machine.
        compile: let vLLM compile the model (slower start); None: on a GPU only.
        device: "auto", "cpu" or "cuda" for the transformers backend.
        base_urls: the servers of the openai backend.
        api_key: bearer token for the servers (default `$OPENAI_API_KEY`).
        timeout_s: per HTTP request of the openai backend.
        attempts: tries per request across the servers.
        replay_path: the JSONL file of the replay backend.
        record: in replay mode None; otherwise the backend whose answers are recorded into
            `replay_path` (record mode).
        prices: cost units per token, per model.
        max_batch: the most requests per engine call the broker sends.
    """

    kind: str = "vllm"
    model: str = "smollm2"
    chat: bool | None = None
    seed: int = 0
    max_model_len: int = 4096
    kv_cache_gib: float = 2.0
    compile: bool | None = None
    device: str = "auto"
    base_urls: tuple[str, ...] = ()
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0
    attempts: int = 4
    replay_path: str | None = None
    record: "ModelConfig | None" = None
    prices: PriceTable = field(default_factory=PriceTable)
    max_batch: int = 256

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ModelError(f"unknown backend {self.kind!r} (known: {', '.join(KINDS)})")
        if self.kind == "openai" and not self.base_urls:
            raise ModelError("the openai backend needs --base-url (one or more server URLs)")
        if self.kind == "replay" and not self.replay_path:
            raise ModelError("the replay backend needs a replay file")
        object.__setattr__(self, "base_urls", tuple(self.base_urls))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from a JSON object (a config file section); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelError(f"unknown model setting(s): {', '.join(sorted(unknown))}")
        data = dict(data)
        if isinstance(data.get("record"), dict):
            data["record"] = cls.from_json(data["record"])
        if isinstance(data.get("prices"), dict):
            data["prices"] = PriceTable.from_json(data["prices"])
        if isinstance(data.get("base_urls"), (list, str)):
            urls = data["base_urls"]
            data["base_urls"] = tuple([urls] if isinstance(urls, str) else urls)
        return cls(**data)


def open_backend(config: ModelConfig) -> Backend:
    """Load the engine (or connect to the servers) a config names."""
    if config.kind == "replay":
        from flowmend.llm._replay import RecordingBackend, ReplayBackend

        if config.record is not None:
            return RecordingBackend(open_backend(config.record), config.replay_path)
        return ReplayBackend(config.replay_path, chat=config.chat is not False)
    if config.kind == "openai":
        from flowmend.llm._openai import OpenAIBackend

        return OpenAIBackend(
            config.base_urls,
            model=config.model,
            api_key=config.api_key,
            chat=_chat_of(config.model, config.chat),
            timeout_s=config.timeout_s,
            attempts=config.attempts,
            prices=config.prices,
        )
    from flowmend.llm._store import resolve_model

    resolved = resolve_model(config.model)
    chat = config.chat if config.chat is not None else resolved.chat
    if config.kind == "vllm":
        from flowmend.llm._vllm import VLLMBackend

        return VLLMBackend(
            resolved.source,
            name=resolved.name,
            chat=chat,
            seed=config.seed,
            max_model_len=config.max_model_len,
            kv_cache_gib=config.kv_cache_gib,
            prices=config.prices,
            compile=config.compile,
        )
    from flowmend.llm._transformers import TransformersBackend

    return TransformersBackend(
        resolved.source,
        name=resolved.name,
        chat=chat,
        device=config.device,
        seed=config.seed,
        prices=config.prices,
    )


@dataclass
class Models:
    """The two brokers the inner loop talks to; the same object when they share an engine."""

    program: Broker
    optimizer: Broker

    @property
    def shared(self) -> bool:
        return self.program is self.optimizer

    def close(self) -> None:
        for broker in {id(b): b for b in (self.program, self.optimizer)}.values():
            broker.close()
            broker.backend.close()

    def __enter__(self) -> "Models":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_models(program: ModelConfig, optimizer: ModelConfig | None = None) -> Models:
    """Open the program and optimizer models; one engine and broker when the configs agree.

    Servers are asked first whether they serve the model (`OpenAIBackend.probe`), so a wrong
    URL or model name is one error now rather than a run of failed calls.
    """
    program_broker = Broker(_probed(open_backend(program)), max_batch=program.max_batch)
    if optimizer is None or optimizer == program:
        return Models(program_broker, program_broker)
    try:
        optimizer_broker = Broker(_probed(open_backend(optimizer)), max_batch=optimizer.max_batch)
    except BaseException:
        program_broker.close()
        program_broker.backend.close()
        raise
    return Models(program_broker, optimizer_broker)


def _probed(backend: Backend) -> Backend:
    probe = getattr(backend, "probe", None)
    if probe is not None:
        try:
            probe()
        except BaseException:
            backend.close()
            raise
    return backend


def _chat_of(model: str, chat: bool | None) -> bool:
    if chat is not None:
        return chat
    from flowmend.llm._store import embedded_model

    embedded = embedded_model(model)
    return embedded.chat if embedded is not None else True


def model_config(model: str, *, backend: str, seed: int = 0, base_urls=(), replay=None,
                 record=None):
    """The `ModelConfig` for `model` on `backend`: replayed from `replay`, or recorded into
    `record` around the real backend. Shared by `repair` and `bench`."""
    if replay or backend == "replay":
        return ModelConfig(kind="replay", model=model, replay_path=replay)
    inner = ModelConfig(kind=backend, model=model, seed=seed, base_urls=tuple(base_urls))
    if record:
        return ModelConfig(kind="replay", model=model, replay_path=record, record=inner)
    return inner
