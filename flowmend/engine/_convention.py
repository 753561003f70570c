"""Step conventions as data: which calls of a workflow are steps, where a step's prompt is,
which keyword parameters its callee takes, and how its text answer is read from the result.

The default convention is flowmend's own, ``x = llm(prompt, **params)``. Others describe the
workflows agent frameworks publish: ``await self.custom_code_generate(problem=...,
instruction=...)``, ``thinking, answer = agent([task_info], instruction)``, ``agents[i](...)``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import libcst as cst

from flowmend.engine._cstutil import dotted_name
from flowmend.errors import UserError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ANSWER = re.compile(r"(result)\Z|(key|attr):([A-Za-z_][A-Za-z0-9_]*)\Z|(item):(\d)\Z")
_KEYS = ("name", "callees", "prompt", "params", "answer")


class ConventionError(UserError):
    """A convention that cannot be used: an unknown key, a malformed pattern or accessor."""


@dataclass(frozen=True)
class Convention:
    """How one family of step calls is written.

    Attributes:
        name: what the convention is called in messages and ``steps --explain``.
        callees: dotted callee patterns, globs allowed (``llm``, ``self.custom_*``). A call
            through a subscript of a matching name is a step too: ``agents`` matches
            ``agents[i](...)``, ``self.agents`` matches ``self.agents[k](...)``.
        prompt: where the prompt is, candidates in order: ``#N`` for the N-th positional
            argument (from 0), else a keyword name. None: flowmend's own (``#0``, then
            ``prompt=``), and a call passing neither simply has no prompt; a convention that
            names its candidates requires one of them at every call.
        params: the keyword parameters the callee accepts besides the prompt (what
            set-call-params, swap-model and sample-and-select may set). None: any keyword,
            like ``llm(prompt, **params)``.
        answer: how the text answer is read from the call's result: ``result`` (the result
            itself), ``key:NAME`` (``result['NAME']``), ``attr:NAME`` (``result.NAME``) or
            ``item:N`` (element N of the result, the N-th name of a tuple target).
    """

    name: str = "default"
    callees: tuple[str, ...] = ("llm",)
    prompt: tuple[str, ...] | None = None
    params: tuple[str, ...] | None = None
    answer: str = "result"

    def __post_init__(self) -> None:
        for key in ("callees", "prompt", "params"):
            value = getattr(self, key)
            if isinstance(value, str):
                raise ConventionError(f"convention {self.name!r}: {key} must be a list of strings")
            if value is not None:
                object.__setattr__(self, key, tuple(value))
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConventionError("a convention needs a non-empty name")
        if not self.callees or any(not isinstance(c, str) or not c.strip() for c in self.callees):
            raise ConventionError(f"convention {self.name!r}: callees must be non-empty strings")
        if self.prompt is not None:
            if not self.prompt:
                raise ConventionError(f"convention {self.name!r}: prompt names no argument")
            for where in self.prompt:
                if not isinstance(where, str) or not (
                        _IDENTIFIER.match(where) or re.fullmatch(r"#\d+", where)):
                    raise ConventionError(
                        f"convention {self.name!r}: prompt argument {where!r} is neither a "
                        "keyword name nor #N (a positional index)")
        if self.params is not None:
            bad = [p for p in self.params if not isinstance(p, str) or not _IDENTIFIER.match(p)]
            if bad:
                raise ConventionError(f"convention {self.name!r}: params {bad!r} are not names")
        if not isinstance(self.answer, str) or not _ANSWER.match(self.answer):
            raise ConventionError(
                f"convention {self.name!r}: answer {self.answer!r} must be result, key:NAME, "
                "attr:NAME or item:N")

    # -- what a call is -------------------------------------------------------------------------

    @property
    def prompt_candidates(self) -> tuple[str, ...]:
        return self.prompt if self.prompt is not None else ("#0", "prompt")

    @property
    def requires_prompt(self) -> bool:
        return self.prompt is not None

    def matches(self, func: cst.BaseExpression) -> str | None:
        """The pattern that makes a call of `func` a step under this convention, else None."""
        return _match(callee_name(func), self.callees)

    def accepts(self, param: str) -> bool:
        """Whether the callee takes keyword `param`."""
        return self.params is None or param in self.params

    # -- the text answer ------------------------------------------------------------------------

    @property
    def answer_item(self) -> int | None:
        """N for ``item:N``: the answer is one element of a tuple result."""
        return int(self.answer.split(":", 1)[1]) if self.answer.startswith("item:") else None

    def answer_of(self, result: str) -> str:
        """Source text reading the text answer from `result` (the source of a call's value)."""
        kind, _, ref = self.answer.partition(":")
        if kind == "key":
            return f"{result}[{ref!r}]"
        if kind == "attr":
            return f"{result}.{ref}"
        if kind == "item":
            return f"{result}[{ref}]"
        return result

    # -- data -----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "callees": list(self.callees),
            "prompt": list(self.prompt) if self.prompt is not None else None,
            "params": list(self.params) if self.params is not None else None,
            "answer": self.answer,
        }

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> Convention:
        """A convention from its JSON (or TOML) form; a one-line error names what is wrong."""
        if not isinstance(data, Mapping):
            raise ConventionError(f"a convention must be a table, got {type(data).__name__}",
                                  where=where)
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ConventionError(
                f"convention {data.get('name', '?')!r}: unknown key(s) {', '.join(unknown)} "
                f"(known: {', '.join(_KEYS)})", where=where)
        callees = data.get("callees", ("llm",))
        if isinstance(callees, str):
            callees = (callees,)
        prompt = data.get("prompt")
        if isinstance(prompt, (str, int)):
            prompt = (prompt,)
        if prompt is not None:
            prompt = tuple(f"#{p}" if isinstance(p, int) else p for p in prompt)
        try:
            return cls(
                name=data.get("name", "default"),
                callees=tuple(callees) if isinstance(callees, Sequence) else callees,
                prompt=prompt,
                params=data.get("params"),
                answer=data.get("answer", "result"),
            )
        except ConventionError as err:
            raise ConventionError(err.message, where=where) from None
        except TypeError as err:
            raise ConventionError(f"malformed convention: {err}", where=where) from None

    def canonical(self) -> str:
        """A byte-stable text of the convention, for digests."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))


DEFAULT = Convention()


def from_callees(callees: Iterable[str]) -> tuple[Convention, ...]:
    """The default convention with other callee patterns (what ``--step-callee`` names)."""
    callees = tuple(callees)
    return (DEFAULT,) if callees == DEFAULT.callees else (Convention(callees=callees),)


def callee_name(func: cst.BaseExpression) -> str | None:
    """A callee as a dotted name, each subscript written ``[]``: ``llm``, ``self.generate``,
    ``agents[]``, ``self.agents[]``; None for anything else (a call's result, a lambda)."""
    if isinstance(func, cst.Subscript):
        base = callee_name(func.value)
        return f"{base}[]" if base else None
    if isinstance(func, cst.Attribute):
        base = callee_name(func.value)
        return f"{base}.{func.attr.value}" if base else None
    return dotted_name(func)


def _match(name: str | None, patterns: Iterable[str]) -> str | None:
    if name is None:
        return None
    through = name
    while through.endswith("[]"):
        through = through[:-2]
    for pattern in patterns:
        if "[" in pattern:
            # A pattern spelling the subscript (``agents[]``) matches it literally.
            if fnmatch.fnmatchcase(name, pattern.replace("[]", "[[][]]")):
                return pattern
        elif "[" not in through and fnmatch.fnmatchcase(through, pattern):
            return pattern
    return None


def convention_for(conventions: Sequence[Convention], func: cst.BaseExpression) -> Convention | None:
    """The first convention under which a call of `func` is a step."""
    for convention in conventions:
        if convention.matches(func):
            return convention
    return None


def check_unique(conventions: Sequence[Convention], where: str | None = None) -> None:
    names = [c.name for c in conventions]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConventionError(f"convention name(s) {', '.join(repeated)} given twice", where=where)
