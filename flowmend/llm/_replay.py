"""Recorded completions: record any backend's answers to a JSONL file, replay them exactly.

A record is keyed by the request (sha256 of its canonical JSON), so a replayed run gets the
same texts, token counts and costs as the recorded one, whatever the order of the calls. A
request recorded several times (sampling) is answered with its recordings in order; once they
run out, the last one repeats.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from flowmend.llm._types import Backend, Completion, ModelError, Request

RECORD_SCHEMA = "flowmend.replay/1"


class ReplayMiss(ModelError):
    """The replay file holds no completion for a request."""


class RecordingBackend(Backend):
    """Wraps a backend and appends every request and its completion to a JSONL file."""

    name = "record"

    def __init__(self, inner: Backend, path: str | Path):
        self.inner = inner
        self.path = Path(path)
        self.model = inner.model
        self.chat = inner.chat
        self.concurrent = inner.concurrent  # appends are locked; batches may overlap
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def check(self, request: Request) -> None:
        self.inner.check(request)

    @property
    def exact_prompt_tokens(self) -> bool:  # type: ignore[override]
        return self.inner.exact_prompt_tokens

    def count_prompt_tokens(self, request: Request) -> int:
        return self.inner.count_prompt_tokens(request)

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        completions = self.inner.generate(requests)
        lines = [
            json.dumps(
                {
                    "schema": RECORD_SCHEMA,
                    "key": request.key(),
                    "request": request.to_json(),
                    "completion": completion.to_json(),
                },
                sort_keys=True,
            )
            for request, completion in zip(requests, completions)
        ]
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in lines))
        return completions

    def close(self) -> None:
        self.inner.close()


class ReplayBackend(Backend):
    """Answers from a file written by `RecordingBackend`; a request not in it is an error."""

    name = "replay"

    def __init__(self, path: str | Path, *, model: str | None = None, chat: bool = True):
        self.path = Path(path)
        self.chat = chat
        self._records: dict[str, list[Completion]] = defaultdict(list)
        self._used: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ModelError(f"{self.path}: no such replay file") from None
        except OSError as err:
            raise ModelError(f"{self.path}: cannot read the replay file ({err.strerror})") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                request = Request.from_json(record["request"])
                completion = Completion.from_json(record["completion"])
            except (ValueError, KeyError, TypeError) as err:
                raise ModelError(f"not a replay record ({err})", where=f"{self.path}:{number}") from None
            self._records[request.key()].append(completion)
        first = next(iter(self._records.values()), None)
        self.model = model or (first[0].model if first else "replay")

    def __len__(self) -> int:
        return sum(len(v) for v in self._records.values())

    def check(self, request: Request) -> None:
        key = request.key()
        if key not in self._records:
            raise ReplayMiss(
                f"no recorded completion for request {key[:16]} "
                f"({request.excerpt()!r})",
                where=str(self.path),
            )

    # What a replayed completion reports is known before the call.
    exact_prompt_tokens = True

    def count_prompt_tokens(self, request: Request) -> int:
        """The prompt tokens the recording reports for this request: exactly what the replayed
        completion will say. A request not recorded is a `ReplayMiss`."""
        self.check(request)
        return self._records[request.key()][0].prompt_tokens

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        for request in requests:
            self.check(request)
        answers = []
        with self._lock:
            for request in requests:
                key = request.key()
                recorded = self._records[key]
                answers.append(recorded[min(self._used[key], len(recorded) - 1)])
                self._used[key] += 1
        return answers
