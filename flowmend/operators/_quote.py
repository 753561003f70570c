"""Quoting and escaping of prompt text: template placeholders, string and f-string literals
that hold a given text, and appending text to an existing literal."""

from __future__ import annotations

import ast
import json

import libcst as cst


def split_template(text: str) -> list[str | tuple[str]]:
    """A template's literal pieces and ``(expression,)`` placeholders.

    ``{expr}`` is a placeholder when `expr` (braces and quotes inside it balanced) is a Python
    expression that some f-string quoting can hold (no backslash, no conversion or format spec);
    ``{{`` and ``}}`` are literal braces; any other brace is literal text.
    """
    parts: list[str | tuple[str]] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "{}" and text[i : i + 2] in ("{{", "}}"):
            buf.append(ch)
            i += 2
            continue
        if ch == "{":
            end = _closing_brace(text, i)
            expr = text[i + 1 : end] if end != -1 else ""
            if end != -1 and placeholder_ok(expr):
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append((expr.strip(),))
                i = end + 1
                continue
        buf.append(ch)
        i += 1
    if buf:
        parts.append("".join(buf))
    return parts


_QUOTES = ('"', "'", '"""', "'''")


def _closing_brace(text: str, start: int) -> int:
    """Index of the `}` closing the `{` at `start`, skipping nested braces and string literals."""
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            quote = text[i : i + 3] if text[i : i + 3] in _QUOTES else ch
            close = text.find(quote, i + len(quote))
            if close == -1:
                return -1
            i = close + len(quote)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _quotes_for(expr: str) -> list[str]:
    """The f-string quotes that can hold ``{expr}`` as one plain placeholder (Python 3.10+:
    no backslash, no comment, no conversion or format spec)."""
    if "\\" in expr or "\n" in expr or "\r" in expr:
        return []
    usable = []
    for quote in _QUOTES:
        try:
            tree = ast.parse("f" + quote + "{" + expr + "}" + quote, mode="eval")
        except (SyntaxError, ValueError):
            continue
        node = tree.body
        if (
            isinstance(node, ast.JoinedStr)
            and len(node.values) == 1
            and isinstance(node.values[0], ast.FormattedValue)
            and node.values[0].conversion == -1
            and node.values[0].format_spec is None
        ):
            usable.append(quote)
    return usable


def placeholder_ok(expr: str) -> bool:
    return bool(expr.strip()) and bool(_quotes_for(expr.strip()))


def placeholders(text: str) -> list[str]:
    return [p[0] for p in split_template(text) if isinstance(p, tuple)]


def _escape(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def render_template(text: str) -> str | None:
    """Source of a string expression for a template: an f-string when it has placeholders.

    None when no one quoting can hold every placeholder (one uses ``"``, another ``'``).
    """
    parts = split_template(text)
    exprs = [p[0] for p in parts if isinstance(p, tuple)]
    if not exprs:
        return '"' + _escape("".join(p for p in parts if isinstance(p, str))) + '"'
    common = [q for q in _QUOTES if all(q in _quotes_for(e) for e in exprs)]
    if not common:
        return None
    quote = common[0]
    body = "".join(
        "{" + p[0] + "}" if isinstance(p, tuple)
        else _escape_quote(p, quote).replace("{", "{{").replace("}", "}}")
        for p in parts
    )
    return "f" + quote + body + quote


def _escape_quote(text: str, quote: str) -> str:
    """`text` as the inside of a one-line string literal delimited by `quote`."""
    body = _escape(text)  # the body of a double-quoted literal: " and control characters escaped
    if quote[0] == "'":
        body = body.replace('\\"', '"').replace("'", "\\'")
    return body


def render_literal(text: str, like: cst.CSTNode | None = None) -> str:
    """Source of a plain string literal holding `text` verbatim.

    When the literal it replaces (`like`) is triple-quoted and the text spans lines, the new
    one is triple-quoted too, with real line breaks, so a long prompt stays readable.
    """
    quote = _triple_quote_of(like)
    if quote and "\n" in text and "\r" not in text:
        body = text.replace("\\", "\\\\").replace(quote[0], "\\" + quote[0])
        if all(c.isprintable() or c in "\n\t" for c in body):
            return quote + body + quote
    return '"' + _escape(text) + '"'


def _triple_quote_of(node: cst.CSTNode | None) -> str | None:
    if isinstance(node, cst.ConcatenatedString):
        return _triple_quote_of(node.left)
    if isinstance(node, cst.SimpleString) and len(node.quote) == 3 and not node.prefix:
        return node.quote
    return None


def fstring_text(text: str) -> str:
    """`text` escaped for the literal part of a double-quoted f-string."""
    return _escape(text).replace("{", "{{").replace("}", "}}")


def append_to_string(node: cst.BaseExpression, text: str) -> cst.BaseExpression | None:
    """A string literal with `text` added at its end, keeping its quotes; None if not possible."""
    if isinstance(node, cst.ConcatenatedString):
        right = append_to_string(node.right, text)
        return None if right is None else node.with_changes(right=right)
    if isinstance(node, cst.SimpleString):
        prefix = node.prefix.lower()
        if "b" in prefix or "r" in prefix:
            return None
        quote = node.quote
        body = _escape_for(text, quote)
        return node.with_changes(value=node.value[: -len(quote)] + body + quote)
    if isinstance(node, cst.FormattedString):
        prefix = node.prefix.lower()
        if "b" in prefix or "r" in prefix:
            return None
        body = _escape_for(text, node.end).replace("{", "{{").replace("}", "}}")
        parts = list(node.parts)
        if parts and isinstance(parts[-1], cst.FormattedStringText):
            parts[-1] = parts[-1].with_changes(value=parts[-1].value + body)
        else:
            parts.append(cst.FormattedStringText(body))
        return node.with_changes(parts=parts)
    return None


def _escape_for(text: str, quote: str) -> str:
    body = text.replace("\\", "\\\\")
    if len(quote) == 3:
        body = body.replace(quote[0], "\\" + quote[0])
        return body
    body = body.replace(quote, "\\" + quote)
    return body.replace("\n", "\\n").replace("\r", "\\r")


# Operators whose precedence is at least that of `+`: `expr + "..."` needs no parentheses.
