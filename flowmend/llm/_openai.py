"""Any OpenAI-compatible server (`vllm serve`, llama.cpp's server, Ollama), one or several URLs.

A batch becomes concurrent HTTP requests; the server batches them itself. Requests are spread
round-robin over the URLs. A URL that refuses, times out or answers 5xx/429 is benched for a
backoff period that doubles on each failure, and the request moves on to the next URL, for a
bounded number of attempts; then the caller gets one error naming every URL and what it did.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from flowmend.llm._types import (
    Backend,
    Completion,
    ModelError,
    PriceTable,
    Request,
    prompt_bytes_bound,
)


class OpenAIBackend(Backend):
    """Client of one or several OpenAI-compatible servers that all serve the same model.

    Args:
        base_urls: e.g. ``("http://127.0.0.1:8000/v1",)``.
        model: the model name the servers know (`vllm serve`'s `--served-model-name`).
        api_key: sent as bearer token; default `$OPENAI_API_KEY`, else a placeholder.
        chat: bare prompts use the chat endpoint (instruct model) or the completions endpoint.
        timeout_s: per HTTP request.
        attempts: tries per request across all URLs (at least one per URL).
        backoff_s: first bench period of a failing URL; doubles per failure, capped at 30 s.
        concurrency: HTTP requests in flight at once.
        prices: the price table for `Completion.cost`.

    Structured outputs: `choice` goes in vLLM's extra body (`structured_outputs`), so it needs a
    vLLM server; `json_schema` uses the standard `response_format` that vLLM, llama.cpp and
    Ollama all accept.
    """

    name = "openai"
    concurrent = True  # each request is its own HTTP call; the servers batch continuously

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        model: str,
        api_key: str | None = None,
        chat: bool = True,
        timeout_s: float = 120.0,
        attempts: int = 4,
        backoff_s: float = 0.5,
        concurrency: int = 64,
        prices: PriceTable | None = None,
    ):
        import openai

        urls = [u.rstrip("/") for u in base_urls]
        if not urls:
            raise ModelError("the openai backend needs at least one base URL")
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.model = model
        self.chat = chat
        self.urls = urls
        self.prices = prices or PriceTable()
        self.attempts = max(attempts, len(urls))
        self.backoff_s = backoff_s
        self._openai = openai
        self._clients = [
            openai.OpenAI(base_url=u, api_key=key, timeout=timeout_s, max_retries=0) for u in urls
        ]
        self._lock = threading.Lock()
        self._turn = 0
        self._failures = [0] * len(urls)
        self._benched_until = [0.0] * len(urls)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="flowmend-openai")
        self._key = key
        self._count_timeout_s = min(timeout_s, 10.0)
        self._tokenize_missing = False
        self.exact_prompt_tokens = False  # until a server has counted

    def probe(self, timeout_s: float = 10.0) -> None:
        """Ask each server for its model list; raise ModelError, naming every URL and what it
        said, unless one of them serves this model. For command lines, before a long run."""
        problems: dict[str, str] = {}
        for url, client in zip(self.urls, self._clients):
            try:
                served = [m.id for m in client.with_options(timeout=timeout_s).models.list()]
            except self._openai.APIConnectionError as err:
                problems[url] = _describe(err)
                continue
            except self._openai.APIStatusError as err:
                problems[url] = f"answered {err.status_code}: {_server_message(err)}"
                continue
            if self.model in served:
                return
            problems[url] = f"serves {', '.join(map(repr, served)) or 'no model'}, not {self.model!r}"
        detail = "; ".join(f"{url}: {what}" for url, what in problems.items())
        raise ModelError(f"no server serves {self.model!r} ({detail})")

    def check(self, request: Request) -> None:
        if request.messages is not None and not self.chat:
            raise ValueError(f"{self.model} is served as a base model: send a prompt")

    def count_prompt_tokens(self, request: Request) -> int:
        """Exact where the server has vLLM's tokenizer endpoint (`POST /tokenize` beside
        `/v1`), asked for the very messages or prompt `generate` sends; otherwise (llama.cpp,
        Ollama, a hosted API, a server that cannot be reached) the bound
        `prompt_bytes_bound`. A server that answers 404 or 405 is not asked again."""
        self.check(request)
        if self._tokenize_missing:
            return prompt_bytes_bound(request)
        body: dict[str, Any] = {"model": request.model or self.model}
        if self.chat or request.messages is not None:
            # The chat endpoint's defaults: the generation prompt added, no extra special tokens.
            body.update(messages=request.conversation(), add_generation_prompt=True)
        else:
            body["prompt"] = request.prompt
        url = _server_root(self.urls[self._pick()]) + "/tokenize"
        http = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"},
        )
        try:
            with urllib.request.urlopen(http, timeout=self._count_timeout_s) as reply:
                count = int(json.loads(reply.read())["count"])
        except urllib.error.HTTPError as err:
            # vLLM also answers 404 for a model it does not serve: only our own model's 404
            # says the endpoint is missing.
            if err.code in (404, 405) and body["model"] == self.model:
                self._tokenize_missing = True
            return prompt_bytes_bound(request)
        except (OSError, ValueError, KeyError, TypeError):  # unreachable, or not vLLM's answer
            return prompt_bytes_bound(request)
        self.exact_prompt_tokens = True
        return count

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        for request in requests:
            self.check(request)
        futures = [self._pool.submit(self._complete, r) for r in requests]
        return [f.result() for f in futures]

    def _pick(self) -> int:
        """The next URL in turn that is not benched; if all are, the one back soonest."""
        with self._lock:
            now = time.monotonic()
            order = [(self._turn + k) % len(self.urls) for k in range(len(self.urls))]
            self._turn = (self._turn + 1) % len(self.urls)
            for index in order:
                if self._benched_until[index] <= now:
                    return index
            return min(order, key=lambda i: self._benched_until[i])

    def _complete(self, request: Request) -> Completion:
        errors: dict[str, str] = {}
        for _ in range(self.attempts):
            index = self._pick()
            wait = self._benched_until[index] - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            start = time.monotonic()
            try:
                response = self._send(self._clients[index], request)
            except (
                self._openai.APIConnectionError,  # refused, reset, timed out
                self._openai.InternalServerError,
                self._openai.RateLimitError,
            ) as err:
                errors[self.urls[index]] = _describe(err)
                with self._lock:
                    self._failures[index] += 1
                    bench = min(30.0, self.backoff_s * 2 ** (self._failures[index] - 1))
                    self._benched_until[index] = time.monotonic() + bench
                continue
            except self._openai.APIStatusError as err:  # 4xx: asking again will not help
                raise ModelError(
                    f"{self.urls[index]} rejected the request ({err.status_code}): "
                    f"{_server_message(err)}"
                ) from None
            with self._lock:
                self._failures[index] = 0
                self._benched_until[index] = 0.0
            return self._completion(response, request, time.monotonic() - start)
        detail = "; ".join(f"{url}: {what}" for url, what in errors.items())
        raise ModelError(f"no server answered after {self.attempts} attempts ({detail})")

    def _send(self, client: Any, request: Request) -> Any:
        kwargs: dict[str, Any] = {
            "model": request.model or self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "n": request.n,
        }
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.choice is not None:
            kwargs["extra_body"] = {"structured_outputs": {"choice": list(request.choice)}}
        elif request.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json.loads(request.json_schema)},
            }
        if self.chat or request.messages is not None:
            return client.chat.completions.create(messages=request.conversation(), **kwargs)
        if "response_format" in kwargs:  # the completions endpoint has no response_format
            schema = kwargs.pop("response_format")["json_schema"]["schema"]
            kwargs["extra_body"] = {"structured_outputs": {"json": schema}}
        return client.completions.create(prompt=request.prompt, **kwargs)

    def _completion(self, response: Any, request: Request, latency: float) -> Completion:
        choices = sorted(response.choices, key=lambda c: c.index)
        if self.chat or request.messages is not None:
            texts = tuple(c.message.content or "" for c in choices)
        else:
            texts = tuple(c.text or "" for c in choices)
        usage = response.usage
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        model = response.model or self.model
        return Completion(
            texts=texts,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
            model=model,
            cost=self.prices.cost(model, prompt_tokens, completion_tokens),
            finish_reasons=tuple(str(c.finish_reason or "stop") for c in choices),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in self._clients:
            client.close()


def _server_root(base_url: str) -> str:
    """The server's root, where vLLM serves `/tokenize`: the base URL without its `/v1`."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def _describe(err: Exception) -> str:
    """One short phrase for what a server did: timed out, refused, or answered with an error."""
    name = type(err).__name__
    if name == "APITimeoutError":
        return "timed out"
    status = getattr(err, "status_code", None)
    if status is not None:
        return f"answered {status}: {_server_message(err)}"
    cause = err.__cause__ or err.__context__
    while cause is not None and (cause.__cause__ or cause.__context__) is not None:
        cause = cause.__cause__ or cause.__context__
    reason = str(cause or err).strip().splitlines()[0][:160] if str(cause or err).strip() else name
    return f"connection failed ({reason})"


def _server_message(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        message = body.get("message") or body.get("error", {})
        if isinstance(message, dict):
            message = message.get("message")
        if message:
            return str(message).splitlines()[0][:300]
    return str(err).splitlines()[0][:300]
