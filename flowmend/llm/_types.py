"""The data every backend speaks: a `Request` in, a `Completion` out, both plain JSON on the wire.

Requests are frozen and hashable, so the replay backend can key recorded completions by them and
the broker can pass them between threads without copying.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from flowmend.errors import UserError

ROLES = ("system", "user", "assistant")


class ModelError(UserError):
    """A model could not be loaded or reached, or a request could not be answered as asked."""


@dataclass(frozen=True)
class Request:
    """One call to a model.

    Attributes:
        prompt: the text of one user turn. An instruct model sees it through its chat template;
            a base model continues it as plain text. Exactly one of `prompt`, `messages`.
        messages: a whole conversation as (role, content) pairs, roles from `ROLES`.
        max_tokens: the most tokens to generate per sample.
        temperature: 0 is greedy.
        top_p: nucleus sampling mass.
        n: samples to draw for the same prompt.
        stop: strings that end a sample (not included in the text).
        model: the model name asked for; None means the backend's own. A local engine serves
            one model and rejects another name; an OpenAI-compatible server gets it as `model`.
        choice: constrain the answer to exactly one of these strings.
        json_schema: constrain the answer to compact JSON valid under this schema (JSON text).
    """

    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    model: str | None = None
    choice: tuple[str, ...] | None = None
    json_schema: str | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a request needs exactly one of prompt and messages")
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise ValueError(f"prompt must be a string, not {type(self.prompt).__name__}")
        if self.messages is not None:
            messages = tuple((str(role), str(text)) for role, text in self.messages)
            bad = sorted({role for role, _ in messages} - set(ROLES))
            if bad or not messages:
                raise ValueError(f"messages need roles among {ROLES}, got {bad or 'none'}")
            object.__setattr__(self, "messages", messages)
        object.__setattr__(self, "stop", tuple(str(s) for s in self.stop))
        if self.choice is not None:
            choice = tuple(str(c) for c in self.choice)
            if not choice or any(not c for c in choice):
                raise ValueError("choice needs at least one non-empty option")
            object.__setattr__(self, "choice", choice)
        if self.choice is not None and self.json_schema is not None:
            raise ValueError("a request takes at most one of choice and json_schema")
        if self.json_schema is not None:
            try:
                schema = json.loads(self.json_schema)
            except (TypeError, json.JSONDecodeError) as err:
                raise ValueError(f"json_schema is not JSON text: {err}") from None
            if not isinstance(schema, dict):
                raise ValueError("json_schema must be a JSON object")
        if not (isinstance(self.max_tokens, int) and self.max_tokens >= 1):
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not (isinstance(self.n, int) and self.n >= 1):
            raise ValueError(f"n must be a positive integer, got {self.n!r}")
        if not 0.0 <= float(self.temperature) <= 5.0:
            raise ValueError(f"temperature must lie in [0, 5], got {self.temperature!r}")
        if not 0.0 < float(self.top_p) <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def conversation(self) -> list[dict[str, str]]:
        """The request as chat messages: a bare prompt becomes one user turn."""
        if self.messages is not None:
            return [{"role": role, "content": text} for role, text in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]

    def excerpt(self, width: int = 60) -> str:
        """A one-line excerpt of the last turn, for error messages."""
        text = self.prompt if self.prompt is not None else self.messages[-1][1]
        text = " ".join(text.split())
        return text if len(text) <= width else text[: width - 1] + "…"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["messages"] = None if self.messages is None else [list(m) for m in self.messages]
        data["stop"] = list(self.stop)
        data["choice"] = None if self.choice is None else list(self.choice)
        data["temperature"] = float(self.temperature)
        data["top_p"] = float(self.top_p)
        return data

    @classmethod
    def from_json(cls, data: Any) -> "Request":
        """Build a request from JSON (the sandbox's RPC payload); ValueError on bad input."""
        if not isinstance(data, dict):
            raise ValueError(f"a request is a JSON object, not {type(data).__name__}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown request field(s): {', '.join(sorted(unknown))}")
        data = dict(data)
        for name in ("messages", "stop", "choice"):
            if isinstance(data.get(name), list):
                value = data[name]
                data[name] = tuple(tuple(m) for m in value) if name == "messages" else tuple(value)
        try:
            return cls(**data)
        except TypeError as err:
            raise ValueError(str(err)) from None

    def key(self) -> str:
        """sha256 of the canonical JSON of the request: the replay backend's lookup key."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Completion:
    """What a model answered to one `Request`.

    Attributes:
        texts: one text per sample (`Request.n` of them).
        prompt_tokens: tokens of the prompt as the model saw it (template included).
        completion_tokens: generated tokens, summed over the samples.
        latency_s: wall time of the engine call that answered it (the whole batch).
        model: the model that answered.
        cost: cost units from the price table (local models: their tokens).
        finish_reasons: per sample, "stop" or "length".
        queue_s: time the request waited in the broker before its batch started.
    """

    texts: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    model: str
    cost: float
    finish_reasons: tuple[str, ...] = ()
    queue_s: float = 0.0

    @property
    def text(self) -> str:
        return self.texts[0]

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["texts"] = list(self.texts)
        data["finish_reasons"] = list(self.finish_reasons)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Completion":
        return cls(
            texts=tuple(str(t) for t in data["texts"]),
            prompt_tokens=int(data["prompt_tokens"]),
            completion_tokens=int(data["completion_tokens"]),
            latency_s=float(data["latency_s"]),
            model=str(data["model"]),
            cost=float(data["cost"]),
            finish_reasons=tuple(str(r) for r in data.get("finish_reasons", ())),
            queue_s=float(data.get("queue_s", 0.0)),
        )


@dataclass(frozen=True)
class Price:
    """Cost units per prompt token and per completion token."""

    prompt: float = 1.0
    completion: float = 1.0

    def __post_init__(self) -> None:
        if self.prompt < 0 or self.completion < 0:
            raise ValueError("prices cannot be negative")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return self.prompt * prompt_tokens + self.completion * completion_tokens


@dataclass(frozen=True)
class PriceTable:
    """Per-model prices; a model not listed costs `default` (a local model costs its tokens)."""

    prices: tuple[tuple[str, Price], ...] = ()
    default: Price = field(default_factory=Price)

    def price(self, model: str) -> Price:
        return dict(self.prices).get(model, self.default)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return self.price(model).cost(prompt_tokens, completion_tokens)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PriceTable":
        """`{"default": [p, c], "models": {"name": [p, c], ...}}`, prices per token."""
        default = Price(*data.get("default", (1.0, 1.0)))
        models = tuple(sorted((str(k), Price(*v)) for k, v in data.get("models", {}).items()))
        return cls(prices=models, default=default)


class Backend:
    """One model behind one interface: a batch of requests in, one completion per request out.

    Subclasses answer the whole batch in one engine call where the engine allows it, so that
    the broker's batches turn into engine batches.
    """

    name: str = "backend"
    model: str = ""
    #: whether a bare prompt goes through the model's chat template
    chat: bool = True
    #: whether `generate` may run in several threads at once, each batch joining the engine's
    #: running batch (continuous batching); the broker then sends a batch without waiting for
    #: the one before it to finish
    concurrent: bool = False

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        raise NotImplementedError

    #: whether `count_prompt_tokens` is exact (a tokenizer) or the byte bound below
    exact_prompt_tokens: bool = False

    def count_prompt_tokens(self, request: Request) -> int:
        """The prompt tokens `request` will take on this backend, as its completion will report
        them: chat template and special tokens included.

        The budget books this before the call. Backends with a tokenizer count exactly; this
        default is a bound (`prompt_bytes_bound`) that holds for byte-level and byte-fallback
        tokenizers. Raises ValueError for a request the backend cannot render at all.
        """
        return prompt_bytes_bound(request)

    def check(self, request: Request) -> None:
        """Raise ValueError when this backend cannot answer `request` at all.

        The broker calls it at submit time, so one bad request fails alone instead of failing
        the batch it would have joined.
        """
        if request.model is not None and request.model != self.model:
            raise ValueError(f"{self.name} backend serves {self.model!r}, not {request.model!r}")

    def close(self) -> None:
        """Release the engine; idempotent."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; returns (text, whether a stop string was found)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


# Room for a chat template's own tokens (role markers, a default system turn) in the bound.
TEMPLATE_ROOM = 128


def prompt_bytes_bound(request: Request) -> int:
    """An upper bound on a request's prompt tokens without its tokenizer: the UTF-8 length of
    its text plus `TEMPLATE_ROOM`. A byte-level (or byte-fallback) tokenizer never makes more
    tokens than bytes; the room covers the chat template around them."""
    text = request.prompt if request.prompt is not None else "".join(t for _, t in request.messages)
    return len(text.encode()) + TEMPLATE_ROOM
