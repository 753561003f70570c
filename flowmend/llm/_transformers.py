"""Batched generation with Hugging Face transformers: the fallback where vLLM is not installed.

Prompts are left-padded into batches of requests that share their sampling settings. `choice`
is answered by scoring every option's log-likelihood after the prompt (no generation). JSON
schema constraints are not supported here: such a request is refused at submit time.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from typing import Any, Sequence

from flowmend.llm._types import (
    Backend,
    Completion,
    ModelError,
    PriceTable,
    Request,
    truncate_at_stop,
)


class TransformersBackend(Backend):
    """A transformers causal LM on one device.

    Args:
        source: a model folder or hub id.
        name: the model name completions report.
        chat: whether bare prompts go through the chat template; None asks the tokenizer.
        device: "cuda", "cpu" or "auto" (CUDA when available).
        seed: seeds torch's generator once, at load.
        max_batch: the most sequences in one `generate` call.
        prices: the price table for `Completion.cost`.
    """

    name = "transformers"

    def __init__(
        self,
        source: str,
        *,
        name: str | None = None,
        chat: bool | None = None,
        device: str = "auto",
        seed: int = 0,
        max_batch: int = 32,
        prices: PriceTable | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self._torch = torch
        self.model = name or source
        self.prices = prices or PriceTable()
        self.max_batch = max_batch
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(source)
            dtype = torch.bfloat16 if self.device != "cpu" else torch.float32
            self._model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        except Exception as err:  # transformers raises OSError, ValueError, KeyError, ...
            text = (str(err).strip() or type(err).__name__).splitlines()[0][:300]
            raise ModelError(f"{source}: transformers cannot load this model: {text}") from err
        self._model.to(self.device).eval()
        self._tokenizer_lock = threading.Lock()
        torch.manual_seed(seed)
        self.chat = bool(self._tokenizer.chat_template) if chat is None else chat
        pad = self._tokenizer.pad_token_id
        self._pad = pad if pad is not None else self._tokenizer.eos_token_id
        eos = self._model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self._tokenizer.eos_token_id is not None:
            eos.append(self._tokenizer.eos_token_id)
        self._eos = set(eos)

    def check(self, request: Request) -> None:
        super().check(request)
        if request.json_schema is not None:
            raise ValueError(
                "the transformers backend does not constrain JSON schemas; "
                "use the vllm or openai backend, or ask with choice"
            )
        if request.messages is not None and not self.chat:
            raise ValueError(f"{self.model} is a base model without a chat template: send a prompt")

    exact_prompt_tokens = True

    def count_prompt_tokens(self, request: Request) -> int:
        """Exact: the token ids `generate` feeds the model (chat template applied)."""
        self.check(request)
        return len(self._ids(request))

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        for request in requests:
            self.check(request)
        answers: list[Completion | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            if request.choice is not None:
                answers[index] = self._choose(request)
            else:
                groups[(request.temperature, request.top_p, request.n)].append(index)
        for indices in groups.values():
            per_call = max(1, self.max_batch // requests[indices[0]].n)
            for at in range(0, len(indices), per_call):
                chunk = indices[at : at + per_call]
                for index, answer in zip(chunk, self._sample([requests[i] for i in chunk])):
                    answers[index] = answer
        return answers  # type: ignore[return-value]

    def _ids(self, request: Request) -> list[int]:
        # The budget counts from the sandbox's RPC threads while the broker generates: a fast
        # tokenizer is not safe across threads.
        with self._tokenizer_lock:
            if request.messages is None and not self.chat:
                return list(self._tokenizer(request.prompt)["input_ids"])
            ids = self._tokenizer.apply_chat_template(
                request.conversation(), add_generation_prompt=True, tokenize=True
            )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def _batch(self, sequences: list[list[int]]) -> tuple[Any, Any]:
        """Left-pad token id lists into input ids and an attention mask."""
        torch = self._torch
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            if seq:
                ids[row, width - len(seq) :] = torch.tensor(seq)
                mask[row, width - len(seq) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _sample(self, requests: list[Request]) -> list[Completion]:
        first = requests[0]
        prompts = [self._ids(r) for r in requests]
        ids, mask = self._batch(prompts)
        settings: dict[str, Any] = {
            "max_new_tokens": max(r.max_tokens for r in requests),
            "num_return_sequences": first.n,
            "pad_token_id": self._pad,
            "do_sample": not first.greedy,
        }
        if not first.greedy:
            settings.update(temperature=first.temperature, top_p=first.top_p, top_k=0)
        start = time.perf_counter()
        with self._torch.inference_mode():
            out = self._model.generate(input_ids=ids, attention_mask=mask, **settings)
        latency = time.perf_counter() - start
        new = out[:, ids.shape[1] :].tolist()
        completions = []
        for index, request in enumerate(requests):
            texts, reasons, generated = [], [], 0
            for row in new[index * request.n : (index + 1) * request.n]:
                tokens, reason = row[: request.max_tokens], "length"
                for at, token in enumerate(tokens):
                    if token in self._eos:
                        tokens, reason = tokens[:at], "stop"
                        generated += 1  # the end token was generated too
                        break
                generated += len(tokens)
                text, stopped = truncate_at_stop(
                    self._tokenizer.decode(tokens, skip_special_tokens=True), request.stop
                )
                texts.append(text)
                reasons.append("stop" if stopped else reason)
            completions.append(self._completion(request, texts, reasons, len(prompts[index]), generated, latency))
        return completions

    def _choose(self, request: Request) -> Completion:
        """Pick among `request.choice` by the log-likelihood of each option after the prompt.

        For a chat model the option is scored together with the end-of-turn token, so that a
        complete answer is preferred over a prefix of a longer one.
        """
        torch = self._torch
        prompt = self._ids(request)
        end = [self._tokenizer.eos_token_id] if self.chat and self._tokenizer.eos_token_id is not None else []
        options = [
            self._tokenizer(option, add_special_tokens=False)["input_ids"] + end
            for option in request.choice
        ]
        start = time.perf_counter()
        ids, mask = self._batch([prompt + option for option in options])
        with torch.inference_mode():
            # Left padding: positions count real tokens only, as generate() arranges them.
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self._model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = ids[:, 1:]
        picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        scores = []
        for row, option in enumerate(options):
            scores.append(float(picked[row, picked.shape[1] - len(option) :].sum()))
        if request.greedy:
            chosen = [max(range(len(scores)), key=scores.__getitem__)] * request.n
        else:
            top = max(scores)
            weights = [math.exp((s - top) / request.temperature) for s in scores]
            chosen = torch.multinomial(torch.tensor(weights), request.n, replacement=True).tolist()
        latency = time.perf_counter() - start
        texts = [request.choice[i] for i in chosen]
        generated = sum(len(options[i]) for i in chosen)
        return self._completion(request, texts, ["stop"] * request.n, len(prompt), generated, latency)

    def _completion(
        self,
        request: Request,
        texts: list[str],
        reasons: list[str],
        prompt_tokens: int,
        completion_tokens: int,
        latency: float,
    ) -> Completion:
        return Completion(
            texts=tuple(texts),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
            model=self.model,
            cost=self.prices.cost(self.model, prompt_tokens, completion_tokens),
            finish_reasons=tuple(reasons),
        )

    def close(self) -> None:
        self._model = None
