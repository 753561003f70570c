"""Golden-test helpers for operators, in the manner of LibCST's `assertCodemod`.

`assert_operator` parses `before` (dedented), applies one operator and compares the result with
`after` (dedented); `assert_not_applicable` checks that an operator refuses cleanly.
"""

from __future__ import annotations

import textwrap
from typing import Any

from flowmend.engine._library import OperatorLibrary, default_library
from flowmend.engine._operator import Case, Operator
from flowmend.engine._result import Applied, NotApplicable, Result


def dedent(source: str) -> str:
    """Dedent and drop the first line break, so examples can be indented triple-quoted strings."""
    text = textwrap.dedent(source)
    return text[1:] if text.startswith("\n") else text


def _operator_class(op: str | type[Operator], library: OperatorLibrary | None = None) -> type[Operator]:
    """`op` itself, or the operator called `op` in `library` (default: the built-ins)."""
    if isinstance(op, str):
        library = default_library() if library is None else library
        cls = library.get(op)
        if cls is None:
            raise AssertionError(f"no operator {op!r} in the library (known: {', '.join(library.names())})")
        return cls
    return op


def _parse(before: str, entry: str, step_callees: tuple[str, ...]):
    from flowmend.engine._workflow import parse_workflow

    return parse_workflow(dedent(before), entry=entry, step_callees=step_callees)


def run_operator(op: str | type[Operator], before: str, target: dict | None, args: Any,
                 *, entry: str = "solve", step_callees: tuple[str, ...] = ("llm",)) -> Result:
    """Apply an operator to dedented source; a None target means its first site."""
    cls = _operator_class(op)
    wf = _parse(before, entry, step_callees)
    operator = cls()
    if target is None:
        sites = operator.sites(wf)
        if not sites:
            raise AssertionError(f"{cls.name} lists no site in:\n{dedent(before)}")
        target = sites[0]
    return operator.apply(wf, target, args)


def assert_operator(op: str | type[Operator], before: str, target: dict | None, args: Any,
                    after: str, *, entry: str = "solve",
                    step_callees: tuple[str, ...] = ("llm",)) -> Applied:
    """Assert that the operator turns `before` into exactly `after` (both dedented)."""
    result = run_operator(op, before, target, args, entry=entry, step_callees=step_callees)
    name = _operator_class(op).name
    if not isinstance(result, Applied):
        raise AssertionError(f"{name} did not apply: {result}")
    expected = dedent(after)
    if result.source != expected:
        raise AssertionError(
            f"{name} produced different source.\n--- expected\n{expected}\n--- got\n{result.source}"
            f"\n--- diff against before\n{result.diff}"
        )
    return result


def assert_not_applicable(op: str | type[Operator], before: str, target: dict | None, args: Any,
                          *, entry: str = "solve",
                          step_callees: tuple[str, ...] = ("llm",)) -> NotApplicable | None:
    """Assert that the operator refuses: no site at all (target None), or `NotApplicable` at target."""
    cls = _operator_class(op)
    wf = _parse(before, entry, step_callees)
    operator = cls()
    if target is None:
        sites = operator.sites(wf)
        if sites:
            raise AssertionError(f"{cls.name} unexpectedly lists sites {sites} in:\n{dedent(before)}")
        return None
    result = operator.apply(wf, target, args)
    if not isinstance(result, NotApplicable):
        raise AssertionError(f"{cls.name} should not apply at {target}, got {result}")
    return result


def check_case(op: str | type[Operator], case: Case, *, applicable: bool) -> None:
    """Run one of an operator's own `EXAMPLES` (applicable) or `NOT_APPLICABLE` cases."""
    if applicable:
        assert_operator(op, case.before, case.target, case.args, case.after or "", entry=case.entry)
    else:
        assert_not_applicable(op, case.before, case.target, case.args, entry=case.entry)
