"""Visible checks: the examples in a task's docstring turned into ``assert`` snippets.

Three example styles are read. Doctest style (``>>> f(1)`` then the expected value on the next
lines, or ``>>> f(1) == 2`` on its own); the inline style of many HumanEval prompts
(``f(1) == 2``, ``f(1) ➞ 2``, ``f(1) => 2``, ``f(1) returns 2``, ``f(1) should return 2.``); and
prose that names the arguments (``Input: n = 5`` / ``Output: 1``, ``For lst = [1, 2] the
output should be 3``), mapped onto the function's parameters.
An example becomes a check only when it is unambiguous: the call's arguments and the expected
value are Python literals. Everything else is skipped, with the reason kept in `Example.skipped`.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass

__all__ = ["Example", "docstring_examples", "visible_checks_from_docstring"]

FLOAT_TOLERANCE = 1e-6
_MAX_EXPECTED_LINES = 30
# What sits between an inline example's call and its expected value; longest alternatives first.
_SEPARATOR = re.compile(r"[ \t]*(?:#[ \t]*)?(==>|=>|->|➞|==|=|should return|returns|return)[ \t]*")
# What may follow an expected value on the same line: nothing, a comment, or prose.
_PROSE_TAIL = re.compile(r"^\s*(?:$|#|\(\s*[A-Za-z]|[.,;:]\s*(?:$|[A-Za-z]))")


@dataclass(frozen=True)
class Example:
    """One example found in a docstring and what became of it.

    Attributes:
        line: 1-based line of the example in the docstring.
        source: the example's expression as written.
        expected: the expected output as written ("" when none).
        check: the ``assert`` snippet, or None when the example was skipped.
        skipped: why it was skipped ("" when it became a check).
    """

    line: int
    source: str
    expected: str
    check: str | None
    skipped: str = ""


def visible_checks_from_docstring(prompt: str, entry_point: str) -> tuple[str, ...]:
    """The ``assert`` snippets for the examples in ``entry_point``'s docstring, in order, deduplicated.

    Each snippet references only ``entry_point`` (and builtins), e.g.
    ``assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False``. A float expected value becomes
    ``assert abs(f(...) - v) < 1e-06``; None becomes ``assert f(...) is None``.
    """
    checks: list[str] = []
    for example in docstring_examples(prompt, entry_point):
        if example.check is not None and example.check not in checks:
            checks.append(example.check)
    return tuple(checks)


def docstring_examples(prompt: str, entry_point: str) -> list[Example]:
    """Every example in ``entry_point``'s docstring (the whole prompt when there is none), checks and skips."""
    doc, params = _docstring(prompt, entry_point)
    lines = doc.splitlines()
    doctests = _doctest_examples(lines, entry_point)
    taken = {line for ex in doctests for line in range(ex.line, ex.line + ex.source.count("\n") + 1)}
    inline = _inline_examples(lines, entry_point, skip_lines=taken)
    prose = _prose_examples(lines, entry_point, params) if params is not None else []
    return sorted(doctests + inline + prose, key=lambda ex: ex.line)


def _docstring(prompt: str, entry_point: str) -> tuple[str, list[tuple[str, bool]] | None]:
    """The docstring as written, and the function's positional parameters (name, has a default).

    The parameters are None when the prompt has no such function; the docstring is then the
    whole prompt. A function whose first statement is not its docstring (an ``import`` first)
    still has its first string statement read.
    """
    try:
        tree = ast.parse(prompt)
    except (SyntaxError, ValueError):
        return prompt, None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point:
            positional = node.args.posonlyargs + node.args.args
            first_default = len(positional) - len(node.args.defaults)
            params = [(a.arg, i >= first_default) for i, a in enumerate(positional)]
            doc = next(
                (
                    stmt.value
                    for stmt in node.body
                    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)
                ),
                None,
            )
            if doc is None:
                return "", params
            # The docstring as written, escapes uninterpreted: in `>>> f("a\nb")` the
            # backslash-n belongs to the example's source, not a line break of the docstring.
            segment = ast.get_source_segment(prompt, doc) or ""
            return inspect.cleandoc(_DOC_QUOTES.sub("", segment)), params
    return prompt, None


_DOC_QUOTES = re.compile(r"""^[rRuU]?(?:'''|\"\"\"|'|")|(?:'''|\"\"\"|'|")$""")


# --- doctest style -------------------------------------------------------------------------


def _doctest_examples(lines: list[str], entry_point: str) -> list[Example]:
    examples = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped.startswith(">>>"):
            i += 1
            continue
        start = i
        source = [_drop_prompt(stripped, ">>>")]
        i += 1
        while i < len(lines) and lines[i].strip().startswith("..."):
            source.append(_drop_prompt(lines[i].strip(), "..."))
            i += 1
        expected = []
        while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(">>>"):
            expected.append(lines[i].strip())
            i += 1
        examples.append(_doctest_check(start + 1, "\n".join(source), expected, entry_point))
    return examples


def _drop_prompt(line: str, prompt: str) -> str:
    rest = line[len(prompt) :]
    return rest[1:] if rest.startswith(" ") else rest


def _doctest_check(line: int, source: str, expected: list[str], entry_point: str) -> Example:
    shown = "\n".join(expected)

    def skip(reason: str) -> Example:
        return Example(line, source, shown, None, reason)

    try:
        expr = ast.parse(source.strip(), mode="eval").body
    except SyntaxError:
        return skip("the example is not a single expression")
    if not _calls(expr, entry_point):
        return skip(f"the example does not call {entry_point}")
    if not expected:
        if isinstance(expr, ast.Compare):
            return Example(line, source, shown, f"assert {ast.unparse(expr)}")
        if isinstance(expr, ast.Call):
            # Doctest prints nothing for None, so a call with no output expects None.
            return Example(line, source, shown, f"assert {ast.unparse(expr)} is None")
        return skip("no expected output and the example is not a call or a comparison")
    value_source = _literal_prefix(expected)
    if value_source is None:
        return skip("the expected output is not a Python literal")
    return Example(line, source, shown, _assert(ast.unparse(expr), value_source))


def _literal_prefix(expected: list[str]) -> str | None:
    """The first 1..n lines of doctest output that form a literal (a repr may span lines)."""
    for end in range(1, min(len(expected), _MAX_EXPECTED_LINES) + 1):
        text = "\n".join(expected[:end])
        if _literal(text) is not _NOT_LITERAL:
            return text
    return None


# --- inline style --------------------------------------------------------------------------


def _inline_examples(lines: list[str], entry_point: str, skip_lines: set[int]) -> list[Example]:
    call_start = re.compile(rf"(?<![\w.]){re.escape(entry_point)}[ \t]*\(")
    found: list[tuple[Example, str, bool]] = []  # (example, separator, is an equation)
    for i, line in enumerate(lines):
        if i + 1 in skip_lines or line.strip().startswith((">>>", "...")):
            continue
        for match in call_start.finditer(line):
            parsed = _inline_example(lines, i, match.start(), entry_point)
            if parsed is not None:
                found.append(parsed)
    # A docstring that defines the function by equations ("tri(n) = 1 + n / 2") writes its
    # examples after them; "=" lines before the last equation are steps of the definition.
    last_equation = max((ex.line for ex, sep, eq in found if eq), default=0)
    examples = []
    for ex, sep, equation in found:
        if equation:
            continue
        if sep == "=" and ex.line <= last_equation and ex.check is not None:
            ex = Example(ex.line, ex.source, ex.expected, None, "an '=' line among the equations that define the function")
        examples.append(ex)
    return examples


def _inline_example(lines: list[str], row: int, col: int, entry_point: str):
    text = lines[row][col:]
    end = _call_end(text)
    last = row
    while end is None and last + 1 < len(lines) and last - row < _MAX_EXPECTED_LINES:
        last += 1
        text += "\n" + lines[last]
        end = _call_end(text)
    if end is None:
        return None
    call_source, rest = text[:end], text[end:]
    if "\n" in rest:
        rest = rest[: rest.index("\n")]
    separator = _SEPARATOR.match(rest)
    if separator is None:
        return None  # a mention in prose, not an example
    sep = separator.group(1)
    expected_text = rest[separator.end() :]
    extra = last
    while _unbalanced(expected_text) and extra + 1 < len(lines) and extra - last < _MAX_EXPECTED_LINES:
        extra += 1
        expected_text += "\n" + lines[extra]
    line = row + 1

    def skip(reason: str, equation: bool = False):
        return Example(line, call_source, expected_text.strip(), None, reason), sep, equation

    try:
        call = ast.parse(call_source.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not _literal_arguments(call):
        return skip("the call's arguments are not literals", equation=True)
    value_source, reason = _expected_value(expected_text)
    if value_source is None:
        # "f(3) = f(2) + f(1)" or "f(5) -> 19 - 5 - 6 = 8": a worked equation, not an example.
        return skip(reason, equation=sep == "=" and reason == _NOT_A_LITERAL)
    return Example(line, call_source, expected_text.strip(), _assert(ast.unparse(call), value_source)), sep, False


def _call_end(text: str) -> int | None:
    """Index just past the parenthesis that closes the first call in ``text``, or None."""
    depth = 0
    quote = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _unbalanced(text: str) -> bool:
    return sum(text.count(c) for c in "([{") > sum(text.count(c) for c in ")]}")


_NOT_A_LITERAL = "the expected value is not a Python literal"


def _expected_value(text: str) -> tuple[str | None, str]:
    """The expected value's literal source in an inline or prose example, or None and why not."""
    value_source = _leading_literal(text)
    if value_source is None:
        return None, _NOT_A_LITERAL
    if value_source.lstrip().startswith("(") and not isinstance(_literal(value_source), tuple):
        return None, 'a parenthesised non-tuple ("(x)") is ambiguous: 1-tuple or value?'
    return value_source, ""


def _leading_literal(text: str) -> str | None:
    """The literal at the start of ``text``, when what follows it is only prose or a comment."""
    text = text.strip()
    # JavaScript-style booleans ("is_simple_power(2, 2) => true") are unambiguous.
    bare = text.rstrip(".").strip()
    if bare in ("true", "false"):
        return bare.capitalize()
    if text.endswith(".") and _literal(text[:-1]) is not _NOT_LITERAL:
        return text[:-1].strip()
    if _literal(text) is not _NOT_LITERAL:
        return text
    for end in range(len(text) - 1, 0, -1):
        head, tail = text[:end], text[end:]
        if _PROSE_TAIL.match(tail) and _literal(head) is not _NOT_LITERAL:
            return head.strip()
    return None


def _literal_arguments(call: ast.expr) -> bool:
    if not isinstance(call, ast.Call):
        return False
    values = list(call.args) + [kw.value for kw in call.keywords]
    return all(not isinstance(v, ast.Starred) and _literal(ast.unparse(v)) is not _NOT_LITERAL for v in values)


# --- prose style: "Input: ... / Output: ..." and "For x = 1 the output should be 2" ----------

_INPUT = re.compile(r"^\s*Input\s*:\s*(?P<rest>.*)$", re.IGNORECASE)
_OUTPUT = re.compile(r"^\s*Output\s*:\s*(?P<rest>.*)$", re.IGNORECASE)
_FOR = re.compile(
    r"^\s*(?:[*-]\s*)?For\s+(?P<args>.+?)\s*,?\s+the\s+(?:output|result)\s+(?:should|will)\s+be\s*(?P<value>.+)$",
    re.IGNORECASE,
)
_NAMED_LINE = re.compile(r"^\s*(\w+)\s*:\s*(?=\S)")


def _prose_examples(lines: list[str], entry_point: str, params: list[tuple[str, bool]]) -> list[Example]:
    """Examples that name the arguments rather than write the call; they map onto ``params``."""
    examples = []
    for i, line in enumerate(lines):
        found = _INPUT.match(line)
        if found:
            given = [found.group("rest")]
            j = i + 1
            while j < len(lines) and not _OUTPUT.match(lines[j]) and lines[j].strip() and j - i < 10:
                given.append(lines[j])
                j += 1
            if j >= len(lines) or not _OUTPUT.match(lines[j]):
                continue
            expected = _OUTPUT.match(lines[j]).group("rest")
            for k in range(j + 1, min(j + _MAX_EXPECTED_LINES, len(lines))):
                if not _unbalanced(expected):
                    break
                expected += "\n" + lines[k]
            examples.append(_prose_check(i + 1, "\n".join(given).strip(), expected, entry_point, params))
            continue
        found = _FOR.match(line)
        if found:
            examples.append(_prose_check(i + 1, found.group("args"), found.group("value"), entry_point, params))
    return examples


def _prose_check(line: int, given: str, expected: str, entry_point: str, params) -> Example:
    arguments = _arguments(given, params)
    if arguments is None:
        return Example(line, given, expected.strip(), None, "the inputs are not literals named like the parameters")
    call = f"{entry_point}({', '.join(arguments)})"
    value_source, reason = _expected_value(expected)
    if value_source is None:
        return Example(line, given, expected.strip(), None, reason)
    return Example(line, given, expected.strip(), _assert(call, value_source))


def _arguments(given: str, params: list[tuple[str, bool]]) -> list[str] | None:
    """Argument sources in parameter order, from ``3``, ``n = 5, k = 2`` or ``name : value`` lines.

    Named inputs must be parameters and cover every parameter without a default; text after
    the arguments ("N = 1000, the sum of digits will be 1") is dropped at a comma.
    """
    if not given:
        return None
    rows = given.splitlines()
    if all(_NAMED_LINE.match(r) for r in rows if r.strip()):
        given = ", ".join(_NAMED_LINE.sub(r"\1 = ", r).strip() for r in rows if r.strip())
    if len([p for p, has_default in params if not has_default]) == 1 and _literal(given) is not _NOT_LITERAL:
        return [ast.unparse(ast.parse(given.strip(), mode="eval").body)]
    pieces = given.split(",")
    for end in range(len(pieces), 0, -1):
        try:
            call = ast.parse(f"_({','.join(pieces[:end])})", mode="eval").body
        except SyntaxError:
            continue
        if not isinstance(call, ast.Call) or call.args or not call.keywords:
            continue
        named = {kw.arg: kw.value for kw in call.keywords}
        names = [p for p, _ in params]
        required = {p for p, has_default in params if not has_default}
        if None in named or not set(named) <= set(names) or not required <= set(named):
            return None
        if any(_literal(ast.unparse(v)) is _NOT_LITERAL for v in named.values()):
            return None
        # Positional, in the signature's order: a candidate may rename its parameters.
        used = [n for n in names if n in named]
        if used != names[: len(used)]:
            return [f"{n}={ast.unparse(named[n])}" for n in used]
        return [ast.unparse(named[n]) for n in used]
    return None


# --- shared --------------------------------------------------------------------------------

_NOT_LITERAL = object()


def _literal(text: str):
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _calls(expr: ast.expr, entry_point: str) -> bool:
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry_point
        for node in ast.walk(expr)
    )


def _assert(actual: str, value_source: str) -> str:
    value = _literal(value_source)
    expected = ast.unparse(ast.parse(value_source.strip(), mode="eval").body)
    if value is None:
        return f"assert {actual} is None"
    if isinstance(value, float):
        return f"assert abs({actual} - {expected}) < {FLOAT_TOLERANCE!r}"
    return f"assert {actual} == {expected}"
