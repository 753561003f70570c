"""Batch-first model client, its backends and the local model store.

Requests go in, completions come out; the `Broker` gathers the requests of every running
workflow into engine batches. Backends: vLLM in-process, OpenAI-compatible servers,
transformers, and replay of recorded completions. Heavy libraries load only when a backend
that needs them is opened.
"""

from flowmend import _api

_api.public_api(__name__, globals(), {
    "_broker": ("Broker", "BrokerClosed", "BrokerStats"),
    "_config": ("KINDS", "ModelConfig", "Models", "model_config", "open_backend", "open_models"),
    "_replay": ("RecordingBackend", "ReplayBackend", "ReplayMiss"),
    "_store": ("EMBEDDED", "EmbeddedModel", "ResolvedModel", "cache_root", "embedded_model",
               "is_prepared", "model_dir", "prepare", "resolve_model"),
    "_types": ("Backend", "Completion", "ModelError", "Price", "PriceTable", "Request",
               "prompt_bytes_bound"),
})
