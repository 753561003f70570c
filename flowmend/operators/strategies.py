"""Hypothesis strategies for operator fuzzing: random valid workflows and random patches.

`workflow_sources()` builds workflow modules (several steps, f-strings, concatenations,
constants, `.format`, async, loops, branches, comments); `patches(wf)` draws an operator, one of
its sites (or, now and then, any step) and random arguments valid for its argument dataclass.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from hypothesis import assume
from hypothesis import strategies as st

from flowmend.engine._args import ArgsError, Between, Identifier, Text
from flowmend.engine._convention import Convention
from flowmend.engine._library import OperatorLibrary, default_library
from flowmend.engine._workflow import Workflow

STEP_NAMES = ("plan", "draft", "code", "critique", "tests", "answer", "notes", "solution")

# The step conventions the fuzzer writes workflows in: flowmend's own, and one of each family
# that agent frameworks publish (keyword instruction and dict answer; positional instruction,
# tuple target and a list of agents; a reply object read by attribute).
CONVENTIONS = {
    "default": Convention(),
    "keyword": Convention(name="keyword", callees=("generate",), prompt=("instruction",),
                          params=("max_tokens",), answer="key:response"),
    "agent": Convention(name="agent", callees=("agent", "agents"), prompt=("#1",),
                        params=("temperature",), answer="item:1"),
    "reply": Convention(name="reply", callees=("reviewer",), prompt=("#0", "prompt"),
                        params=("temperature", "model"), answer="attr:content"),
}
MODELS = ("smollm2", "gemma3-270m", "local/model-a")

# Prompt text: letters plus everything that needs escaping somewhere (quotes, braces, backslash).
_PROMPT_CHARS = st.sampled_from(list("abcdefgh xyz.,:;?-") + ["'", '"', "{", "}", "\\", "\n", "é"])
prompt_text = st.text(_PROMPT_CHARS, min_size=1, max_size=24)
comment_text = st.text(st.sampled_from(list("abc xyz:'\"#{}")), max_size=16)


def _escape(text: str, quote: str = '"', fstring: bool = False) -> str:
    out = text.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")
    return out.replace("{", "{{").replace("}", "}}") if fstring else out


@st.composite
def _prompt(draw, available: list[str], constants: dict[str, str]) -> str:
    """Source of a prompt expression that reads `task.prompt` and/or earlier step outputs."""
    reads = ["task.prompt", *available]
    style = draw(st.sampled_from(["literal", "fstring", "fstring", "concat", "constant", "format"]))
    quote = draw(st.sampled_from(['"', "'"]))
    if style == "literal":
        text = draw(prompt_text)
        return quote + _escape(text, quote) + quote
    if style == "fstring":
        pieces = []
        # Placeholders may hold the other kind of quote (`{', '.join(...)}`), as real prompts do.
        other = "'" if quote == '"' else '"'
        joined = [f"{other}, {other}.join([{r}])" for r in reads]
        for _ in range(draw(st.integers(1, 3))):
            pieces.append(_escape(draw(prompt_text), quote, fstring=True))
            pieces.append("{" + draw(st.sampled_from(reads + joined[:1])) + "}")
        if draw(st.booleans()):
            pieces.append(_escape(draw(prompt_text), quote, fstring=True))
        return "f" + quote + "".join(pieces) + quote
    if style == "concat":
        head = quote + _escape(draw(prompt_text), quote) + quote
        return f"{head} + {draw(st.sampled_from(reads))}"
    if style == "constant":
        name = f"PROMPT_{draw(st.integers(1, 2))}"
        constants.setdefault(name, draw(prompt_text))
        return name
    field = draw(st.sampled_from(reads))
    text = _escape(draw(prompt_text), quote, fstring=True)
    return f"{quote}{text}{{x}}{quote}.format(x={field})"


def _convention_call(draw, convention: str, i: int, prompt: str, params: list[str],
                     body: list[str]) -> tuple[str, str, list[str]]:
    """How a step call is written in a convention other than flowmend's own: the callee, the
    arguments (prompt where the convention puts it) and the statement target's prefix."""
    accepted = CONVENTIONS[convention].params or ()
    params = [p for p in params if p.split("=", 1)[0] in accepted]
    if convention == "keyword":
        return "generate", ["problem=task.prompt", f"instruction={prompt}", *params], ""
    if convention == "reply":
        keyword = draw(st.booleans())
        return "reviewer", [f"prompt={prompt}" if keyword else prompt, *params], ""
    # agent: the instruction second, now and then held by a local variable; now and then an
    # agent of a list, called through a subscript.
    if draw(st.booleans()):
        body.append(f"instruction_{i} = {prompt}")
        prompt = f"instruction_{i}"
    callee = "agent"
    if draw(st.integers(0, 2)) == 0:
        if "agents = [agent, agent]" not in body:
            body.append("agents = [agent, agent]")
        callee = f"agents[{draw(st.integers(0, 1))}]"
    return callee, ["[task.prompt]", prompt, *params], f"thinking_{i}, "


@st.composite
def workflow_sources(draw, entry: str = "solve", callee: str = "llm",
                     convention: str = "default") -> str:
    """Source of a random valid workflow: an entry function of 1 to 5 steps and its module.

    A `callee` starting with ``self.`` makes a class-based workflow: the steps are calls of that
    method in ``Flow.run``, which the entry function calls. A `convention` other than
    ``default`` (a key of `CONVENTIONS`) writes the steps in that convention instead.
    """
    is_async = draw(st.booleans())
    constants: dict[str, str] = {}
    body: list[str] = []  # lines relative to the function body, already indented inside it
    available: list[str] = []
    call_prefix = "await " if is_async else ""
    n_steps = draw(st.integers(1, 5))
    for i in range(n_steps):
        if draw(st.integers(0, 4)) == 0:
            body.append(f"# {draw(comment_text)}".rstrip())
        if draw(st.integers(0, 5)) == 0:
            body.append("")
        repair = available and draw(st.integers(0, 4)) == 0
        if repair:
            name = draw(st.sampled_from(available))
            prompt = f'f"Fix this:\\n{{{name}}}"'
        else:
            name = draw(st.sampled_from(STEP_NAMES))
            prompt = draw(_prompt(available, constants))
        params = []
        if draw(st.booleans()):
            params.append(f"temperature={draw(st.sampled_from(['0', '0.2', '0.7', '1.0']))}")
        if draw(st.integers(0, 3)) == 0:
            params.append(f"max_tokens={draw(st.sampled_from([128, 256, 512]))}")
        if draw(st.integers(0, 3)) == 0:
            params.append(f'model="{draw(st.sampled_from(MODELS))}"')
        step_callee, args, tuple_head = callee, [prompt, *params], ""
        if convention != "default":
            step_callee, args, tuple_head = _convention_call(draw, convention, i, prompt, params, body)
        call = f"{call_prefix}{step_callee}({', '.join(args)})"
        trailing = f"  # {draw(comment_text)}".rstrip() if draw(st.integers(0, 4)) == 0 else ""
        shape = draw(st.sampled_from(["plain"] * 4 + ["loop", "branch", "opaque", "bare", "try", "tall"]))
        if shape == "tall":
            # One argument per line, with a trailing comma: keyword edits must keep the layout.
            tall = ",\n".join(f"        {a}" for a in args)
            body.append(f"{tuple_head}{name} = {call_prefix}{step_callee}(\n{tall},\n    ){trailing}")
        elif shape == "try":
            body.append("try:")
            body.append(f"    {tuple_head}{name} = {call}{trailing}")
            body.append("except Exception as error:")
            body.append(f"    {name} = str(error)")
        elif shape == "loop":
            body.append(f"for round_{i} in range({draw(st.integers(1, 3))}):")
            body.append(f"    {tuple_head}{name} = {call}{trailing}")
        elif shape == "branch" and available:
            body.append(f"if {draw(st.sampled_from(available))}:")
            body.append(f"    {tuple_head}{name} = {call}{trailing}")
            body.append("else:")
            body.append(f"    {name} = {draw(st.sampled_from(available))}")
        elif shape == "opaque":
            body.append(f"prompt_{i} = task.prompt.strip()")
            opaque = call.replace(prompt, f"prompt_{i}", 1) if convention != "default" \
                else f"{call_prefix}{callee}(prompt_{i})"
            body.append(f"{tuple_head}{name} = {opaque}{trailing}")
        elif shape == "bare" and i < n_steps - 1:
            body.append(f"{call}{trailing}")
            continue
        else:
            body.append(f"{tuple_head}{name} = {call}{trailing}")
        if name not in available:
            available.append(name)
    if not available:
        available.append("answer")
        if convention == "default":
            body.append(f'answer = {call_prefix}{callee}(task.prompt)')
        else:
            step_callee, args, tuple_head = _convention_call(draw, convention, n_steps, "task.prompt", [], body)
            body.append(f"{tuple_head}answer = {call_prefix}{step_callee}({', '.join(args)})")
    last = available[-1]
    if draw(st.booleans()):
        body.append(f"return extract_code({last})")
    else:
        body.append(f"return {last}")
    lines = []
    if draw(st.booleans()):
        lines.append(f'"""{draw(st.sampled_from(["A workflow.", "Generated for fuzzing."]))}"""')
    if draw(st.booleans()):
        lines.append("import re")
    for name, text in sorted(constants.items()):
        lines.append(f'{name} = "{_escape(text)}"')
    if lines:
        lines.append("")
        lines.append("")
    header = "async def" if is_async else "def"
    if callee.startswith("self."):
        # A class-based workflow: the steps are method calls in `Flow.run`, reached from the
        # entry function; the called method forwards to the runtime's `llm`.
        method = callee.split(".", 1)[1]
        await_ = "await " if is_async else ""
        lines += [
            "class Flow:",
            f"    {header} {method}(self, prompt, **params):",
            f"        return {await_}llm(prompt, **params)",
            "",
            f"    {header} run(self, task):",
        ]
        lines.extend(("        " + line) if line else "" for line in body)
        lines += ["", "", f"{header} {entry}(task):", f"    return {await_}Flow().run(task)"]
        return "\n".join(lines) + "\n"
    lines.append(f"{header} {entry}(task):")
    if draw(st.integers(0, 3)) == 0:
        lines.append('    """Solve one task."""')
    lines.extend(("    " + line) if line else "" for line in body)
    return "\n".join(lines) + "\n"


# --- arguments and patches ---------------------------------------------------------------------

_TEXT_CHARS = st.sampled_from(list("abcdefghij klmnop.,:!?") + ["'", '"', "{", "}", "\\", "é", "{task.prompt}"])


def _value_strategy(hint: Any) -> st.SearchStrategy:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        members = [m for m in typing.get_args(hint) if m is not type(None)]
        return st.none() | _value_strategy(members[0])
    base, bounds = hint, ()
    if origin is typing.Annotated:
        base, *bounds = typing.get_args(hint)
    if typing.get_origin(base) is Literal:
        return st.sampled_from(typing.get_args(base))
    if base is bool:
        return st.booleans()
    between = next((b for b in bounds if isinstance(b, Between)), None)
    if base is int:
        lo, hi = (int(between.lo), int(between.hi)) if between else (-10, 10)
        return st.integers(lo, hi)
    if base is float:
        lo, hi = (between.lo, between.hi) if between else (-10.0, 10.0)
        return st.floats(lo, hi, allow_nan=False) | st.sampled_from([lo, hi])
    if base is str:
        if any(isinstance(b, Identifier) for b in bounds):
            return st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
        text = next((b for b in bounds if isinstance(b, Text)), Text())
        strategy = st.lists(_TEXT_CHARS, min_size=1, max_size=12).map("".join)
        if not text.one_line:
            strategy = strategy | st.lists(_TEXT_CHARS | st.just("\n"), min_size=1, max_size=12).map("".join)
        return strategy.filter(lambda s: text.min_len <= len(s) <= text.max_len and s.strip())
    raise TypeError(f"no strategy for argument type {hint!r}")


@st.composite
def args_for(draw, cls: type) -> Any:
    """Random valid arguments for an argument dataclass (draws that its checks reject are retried)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    data = {f.name: draw(_value_strategy(hints[f.name])) for f in dataclasses.fields(cls)}
    try:
        return cls(**data)
    except ArgsError:
        assume(False)


@dataclasses.dataclass(frozen=True)
class DrawnPatch:
    """One drawn application: operator name, target and arguments."""

    operator: str
    target: dict
    args: Any


def patches(wf: Workflow, operators: tuple[str, ...] | None = None, *,
            library: OperatorLibrary | None = None) -> st.SearchStrategy[DrawnPatch]:
    """Operator × site × valid arguments; one draw in eight targets any step, site or not.

    The operators are those of `library` (default: the built-ins), or the named ones in it."""
    library = default_library() if library is None else library
    names = operators or tuple(library.names())

    # A closure, so that Hypothesis never builds the (large) repr of the workflow.
    @st.composite
    def draw_patch(draw) -> DrawnPatch:
        name = draw(st.sampled_from(names))
        op = library.get(name)()
        sites = op.sites(wf)
        if sites and draw(st.integers(0, 7)) != 0:
            target = draw(st.sampled_from(sites))
        else:
            target = {"step": draw(st.sampled_from([s.id for s in wf.steps]))}
        presets = op.presets(wf, target) if target in sites else []
        if presets and draw(st.booleans()):
            args = draw(st.sampled_from(presets))
        else:
            args = draw(args_for(op.Args))
        return DrawnPatch(name, target, args)

    return draw_patch()
