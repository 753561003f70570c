"""Batch-first model client, its backends and the local model store.

Requests go in, completions come out; the `Broker` gathers the requests of every running
workflow into engine batches. Backends: vLLM in-process, OpenAI-compatible servers,
transformers, and replay of recorded completions. Heavy libraries load only when a backend
that needs them is opened.
"""

from flowmend.llm._broker import Broker, BrokerClosed, BrokerStats
from flowmend.llm._config import KINDS, ModelConfig, Models, open_backend, open_models
from flowmend.llm._replay import RecordingBackend, ReplayBackend, ReplayMiss
from flowmend.llm._store import (
    EMBEDDED,
    EmbeddedModel,
    ResolvedModel,
    cache_root,
    embedded_model,
    is_prepared,
    model_dir,
    prepare,
    resolve_model,
)
from flowmend.llm._types import Backend, Completion, ModelError, Price, PriceTable, Request

__all__ = [
    "EMBEDDED",
    "KINDS",
    "Backend",
    "Broker",
    "BrokerClosed",
    "BrokerStats",
    "Completion",
    "EmbeddedModel",
    "ModelConfig",
    "ModelError",
    "Models",
    "Price",
    "PriceTable",
    "RecordingBackend",
    "ReplayBackend",
    "ReplayMiss",
    "Request",
    "ResolvedModel",
    "cache_root",
    "embedded_model",
    "is_prepared",
    "model_dir",
    "open_backend",
    "open_models",
    "prepare",
    "resolve_model",
]
