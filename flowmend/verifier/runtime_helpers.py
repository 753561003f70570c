"""Helpers a workflow calls inside the sandbox: `extract_code(text)`, the `Check` that `verify(code)` returns, and the `BudgetExhausted` a refused `llm()` raises.

Standard library only: the sandbox harness loads this file as source into the child process,
where flowmend itself is not importable.
"""

from __future__ import annotations

import ast
import re
import textwrap

__all__ = ["BudgetExhausted", "Check", "CHECK_KINDS", "extract_code"]

CHECK_KINDS = ("ok", "syntax_error", "runtime_error", "failing_check", "no_code")

# A fence line: three or more backticks or tildes, then an optional info string (the language).
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+.-]*)")
_PYTHON_TAGS = {"", "python", "py", "python3", "py3", "pycon", "ipython"}
# Lines a program can start with; prose before the first of them is dropped.
_CODE_START = re.compile(r"^[ \t]*(?:(?:async[ \t]+)?def[ \t]|class[ \t]|import[ \t]|from[ \t]+\S+[ \t]+import[ \t]|@)")
_MAX_PREFIX_LINES = 400


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The Python program inside a model's answer, or "" when there is none.

    The rules, first match wins:

    1. Fenced blocks (```` ``` ````, ```` ```python ````, ``~~~``; an unclosed last fence runs to the end)
       tagged as Python, or untagged ones that parse or hold a line starting like a program
       (prose in a fence is not code): the first that defines ``entry_point`` (when given), else
       the first that defines any function or class, else the first non-empty one. A block
       is returned as written, syntax errors included, so that the verifier can report them.
    2. No such block: the whole text, when it parses and contains a definition, import or
       statement other than a bare name (so that one word of prose is not "code").
    3. Otherwise, from the first line that starts like a program (``def``, ``class``,
       ``import``, ``from .. import``, a decorator), the longest prefix of whole lines that
       parses: prose before the code and a truncated or chatty tail are dropped. When no
       prefix parses, or cutting would lose the definition of ``entry_point``, everything
       from that line on, as written (broken code is code: its syntax error gets reported).
    4. Otherwise "".

    Indented blocks are dedented. The result never has leading or trailing blank lines.
    """
    if not isinstance(text, str):
        raise TypeError(f"extract_code expects text, got {type(text).__name__}")
    blocks = [
        _clean(body)
        for lang, body in _fenced_blocks(text)
        if lang in _PYTHON_TAGS and _is_code_block(lang, body)
    ]
    if blocks:
        return _pick(blocks, entry_point)
    whole = _clean(text)
    if whole and _parses(whole) and _looks_like_code(whole):
        return whole
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _CODE_START.match(line):
            tail = _clean("\n".join(lines[i : i + _MAX_PREFIX_LINES]))
            code = _parseable_prefix(tail)
            lost_entry = entry_point and entry_point in _defined_names(tail) - _defined_names(code)
            if not code or lost_entry:
                return tail  # broken code is still code: the verifier reports its syntax error
            if _looks_like_code(code):
                return code
    return ""


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of each fenced block, in order.

    An unclosed last fence runs to the end of the text: weak models often stop at max_tokens
    inside a block, and that code still counts. A fence with a language inside an open block
    ("```" then "```python", as weak models write) starts a new block; a closing fence may be
    followed by junk such as "<|im_end|>".
    """
    blocks: list[tuple[str, str]] = []
    fence: str | None = None
    lang = ""
    body: list[str] = []
    for line in text.splitlines():
        m = _FENCE.match(line)
        if fence is None:
            if m:
                fence, lang, body = m.group("fence"), m.group("lang").lower(), []
            continue
        if m and m.group("fence")[0] == fence[0] and len(m.group("fence")) >= len(fence):
            if body:
                blocks.append((lang, "\n".join(body)))
            if m.group("lang"):
                fence, lang, body = m.group("fence"), m.group("lang").lower(), []
            else:
                fence = None
            continue
        body.append(line)
    if fence is not None and body:
        blocks.append((lang, "\n".join(body)))
    return blocks


def _is_code_block(lang: str, body: str) -> bool:
    """A Python-tagged block is code; an untagged one only when it parses or starts like code.

    Weak models open a fence and then write prose in it ("```\n\nThis function uses ...").
    """
    body = _clean(body)
    if not body.strip():
        return False
    if lang:
        return True
    return (_parses(body) and _looks_like_code(body)) or any(_CODE_START.match(line) for line in body.splitlines())


def _pick(blocks: list[str], entry_point: str | None) -> str:
    if entry_point:
        for block in blocks:
            if entry_point in _defined_names(block):
                return block
    for block in blocks:
        if _defined_names(block):
            return block
    return blocks[0]


def _clean(code: str) -> str:
    return textwrap.dedent(code).strip("\n").rstrip()


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: source with NUL bytes
        return False
    return True


def _parseable_prefix(code: str) -> str:
    """The longest prefix of whole lines that parses (the code itself when it parses)."""
    if _parses(code):
        return code
    lines = code.splitlines()
    for end in range(len(lines) - 1, 0, -1):
        candidate = _clean("\n".join(lines[:end]))
        if candidate and _parses(candidate):
            return candidate
    return ""


def _defined_names(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return set(re.findall(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+(\w+)", code, re.MULTILINE))
    return {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


def _looks_like_code(code: str) -> bool:
    """True unless every statement is a bare name or constant, which is what prose parses as."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Constant)))
        for node in tree.body
    )


class BudgetExhausted(RuntimeError):
    """A call would pass one of the repair's budget caps; `limit` names which ("calls",
    "tokens", "cost", "wall_time").

    Inside a workflow, `llm()` raises it when the budget refuses the call: a workflow that
    holds an earlier answer may catch it and return that answer, which is then scored.
    """

    def __init__(self, limit: str):
        super().__init__(f"the {limit} budget is spent")
        self.limit = limit


class Check:
    """What `verify(code)` returns inside a workflow: a verdict and a short readable feedback.

    ``kind`` is one of ``CHECK_KINDS``: "ok", "syntax_error", "runtime_error", "failing_check",
    "no_code". ``bool(check)`` is ``check.passed``, so ``if verify(code):`` reads naturally, and
    ``str(check)`` is the feedback text, ready to paste into a repair prompt.
    """

    __slots__ = ("passed", "kind", "feedback")

    def __init__(self, passed: bool, kind: str, feedback: str = ""):
        if kind not in CHECK_KINDS:
            raise ValueError(f"unknown check kind {kind!r}; expected one of {', '.join(CHECK_KINDS)}")
        object.__setattr__(self, "passed", bool(passed))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "feedback", str(feedback))

    def __setattr__(self, name, value):
        raise AttributeError("Check is immutable")

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.feedback:
            return self.feedback
        return "all visible checks passed" if self.passed else self.kind.replace("_", " ")

    def __repr__(self) -> str:
        return f"Check(passed={self.passed!r}, kind={self.kind!r}, feedback={self.feedback!r})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Check):
            return NotImplemented
        return (self.passed, self.kind, self.feedback) == (other.passed, other.kind, other.feedback)

    def __hash__(self) -> int:
        return hash((self.passed, self.kind, self.feedback))

    def to_json(self) -> dict:
        return {"passed": self.passed, "kind": self.kind, "feedback": self.feedback}

    @classmethod
    def from_json(cls, data: dict) -> "Check":
        return cls(bool(data["passed"]), str(data["kind"]), str(data.get("feedback", "")))
