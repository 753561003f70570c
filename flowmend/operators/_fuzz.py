"""The operator properties, checked on one application, and the fuzz loop behind `flowmend fuzz`.

Properties: `apply` never raises and never reports an internal error; every applied result parses,
compiles and parses again as a workflow equal to the one the result carries; text outside the operator's edit region is unchanged;
idempotent operators are idempotent; `add-step` then `remove-step` of the new step restores the
source; `reorder-steps` twice restores the source; and every generated workflow round-trips
through libcst (`parse(code).code == code`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from flowmend.engine._library import OperatorLibrary, default_library
from flowmend.engine._result import Applied, Invalid, NotApplicable, Reason, Result
from flowmend.engine._workflow import Workflow


class PropertyViolation(AssertionError):
    """An operator broke one of its properties; the message says which and on what."""


def _parse(source: str, wf: Workflow):
    from flowmend.engine._workflow import parse_workflow

    return parse_workflow(source, entry=wf.entry, conventions=wf.conventions, path=wf.path,
                          files=wf.files)


def split_footer(text: str) -> tuple[str, str]:
    """The text up to its last line of code, and the blank and comment-only lines after it."""
    lines = text.splitlines(keepends=True)
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return "".join(lines[:end]), "".join(lines[end:])


def check_roundtrip(source: str) -> None:
    """libcst reproduces the source byte for byte."""
    if cst.parse_module(source).code != source:
        raise PropertyViolation(f"libcst round trip changed the source:\n{source}")


def outside_unchanged(before: str, after: str, regions: Sequence[tuple[int, int]]) -> str | None:
    """None when every line of `before` outside `regions` appears unchanged, in order, in
    `after` (the prefix and suffix at the same places); else a description of the first change.
    No region (an edit of another file only) means nothing may change."""
    if not regions:
        return None if before == after else "the text changed though the edit has no region here"
    old = before.splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    spans = sorted((max(1, a), min(len(old), b)) for a, b in regions)
    gaps, cursor = [], 1
    for start, end in spans:
        gaps.append(old[cursor - 1 : start - 1])
        cursor = max(cursor, end + 1)
    gaps.append(old[cursor - 1 :])
    head, tail = gaps[0], gaps[-1]
    if new[: len(head)] != head:
        return "text before the edit region changed"
    if tail and new[len(new) - len(tail) :] != tail:
        return "text after the edit region changed"
    if len(head) + len(tail) > len(new):
        return "the edit region's surroundings overlap in the result"
    position = len(head)
    for gap in gaps[1:-1]:
        found = next(
            (i for i in range(position, len(new) - len(tail) - len(gap) + 1) if new[i : i + len(gap)] == gap),
            None,
        )
        if found is None:
            return "text between edit regions changed"
        position = found + len(gap)
    return None


def check_application(wf: Workflow, operator: str, target: dict, args: Any, *,
                      library: OperatorLibrary | None = None) -> Result:
    """Apply once and check every property that concerns this application.

    `operator` is a name in `library` (default: the built-ins). Returns the result; raises
    `PropertyViolation` when a property fails.
    """
    library = default_library() if library is None else library
    op = library.get(operator)()
    shown = f"{operator} at {target} with {args!r}\n--- workflow\n{wf.source}"
    try:
        result = op.apply(wf, target, args)
    except Exception as err:  # noqa: BLE001 - the property is precisely that this never happens
        raise PropertyViolation(f"apply raised {type(err).__name__}: {err}\n{shown}") from err
    if isinstance(result, Invalid) and result.reason is Reason.INTERNAL:
        raise PropertyViolation(f"internal error: {result.detail}\n{shown}")
    if not isinstance(result, Applied):
        return result
    new_source = result.source
    shown += f"\n--- result\n{new_source}"
    try:
        compile(new_source, "<fuzz>", "exec", dont_inherit=True)
        new_wf = _parse(new_source, result.workflow)  # with the sibling modules it edited
    except Exception as err:  # noqa: BLE001
        raise PropertyViolation(f"result does not parse as a workflow: {err}\n{shown}") from err
    check_roundtrip(new_source)
    if result.workflow.to_json() != new_wf.to_json():
        raise PropertyViolation(f"the result's workflow differs from its source parsed anew\n{shown}")
    parsed = op.parse_args(args)
    problem = outside_unchanged(wf.source, new_source, op.edit_region(wf, target, parsed))
    if problem:
        raise PropertyViolation(f"{problem}\n{shown}")
    if op.IDEMPOTENT:
        again = op.apply(new_wf, target, args)
        if not (isinstance(again, Applied) and again.source == new_source):
            raise PropertyViolation(f"not idempotent: second application gave {_brief(again)}\n{shown}")
    if operator == "add-step" and "remove-step" in library:
        added = [s for s in new_wf.steps if s.id not in {t.id for t in wf.steps}
                 and s.target and s.target not in {t.target for t in wf.steps}]
        if len(added) != 1:
            raise PropertyViolation(f"add-step should add exactly one step, added {len(added)}\n{shown}")
        back = library.get("remove-step")().apply(new_wf, {"step": added[0].id}, {})
        if not (isinstance(back, Applied) and back.source == wf.source):
            raise PropertyViolation(
                f"remove-step of {added[0].id} does not restore the source: {_brief(back)}\n{shown}"
            )
    if operator == "reorder-steps":
        first, second = wf.step(target["step"]), wf.step(target["with"])
        back = None
        for site in op.sites(new_wf):
            trial = op.apply(new_wf, site, {})
            if isinstance(trial, Applied) and trial.source == wf.source:
                back = trial
                break
        if back is None:
            raise PropertyViolation(
                f"reordering {second.id} and {first.id} back does not restore the source\n{shown}"
            )
    return result


def _brief(result: Result) -> str:
    if isinstance(result, Applied):
        return "a different source:\n" + result.source
    return f"{type(result).__name__}({result.reason.value}: {result.detail})"


# --- the fuzz loop ----------------------------------------------------------------------------


@dataclass
class OperatorStats:
    """What the fuzzer saw for one operator."""

    operator: str
    tried: int = 0
    applied: int = 0
    not_applicable: int = 0
    invalid: int = 0
    violations: int = 0
    falsifying: str | None = None
    invalid_reasons: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "operator": self.operator,
            "tried": self.tried,
            "applied": self.applied,
            "not_applicable": self.not_applicable,
            "invalid": self.invalid,
            "invalid_reasons": dict(sorted(self.invalid_reasons.items())),
            "violations": self.violations,
            "falsifying": self.falsifying,
        }


@dataclass
class FuzzReport:
    examples: int
    seed: int
    operators: list[OperatorStats]
    parser: OperatorStats
    seconds: float
    convention: str = "default"

    @property
    def violated(self) -> bool:
        return any(s.violations for s in [*self.operators, self.parser])

    def to_json(self) -> dict:
        return {
            "examples": self.examples,
            "seed": self.seed,
            "seconds": round(self.seconds, 2),
            "convention": self.convention,
            "violated": self.violated,
            "operators": [s.to_json() for s in self.operators],
            "parser": self.parser.to_json(),
        }


def fuzz_operator(name: str, *, examples: int, seed: int, entry: str = "solve",
                  callees: Sequence[str] = ("llm",), on_example: Callable[[], None] | None = None,
                  shrink: bool = True, library: OperatorLibrary | None = None,
                  convention: str = "default") -> OperatorStats:
    """Run `examples` random workflows × random applications of one operator of `library`
    (default: the built-ins), the workflows written in `convention` (a key of
    `strategies.CONVENTIONS`; other than ``default``, `callees` is not used)."""
    library = default_library() if library is None else library
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    from flowmend.engine._workflow import parse_workflow
    from flowmend.operators.strategies import CONVENTIONS, patches, workflow_sources

    stats = OperatorStats(name)
    reading = {"step_callees": tuple(callees)} if convention == "default" else \
        {"conventions": (CONVENTIONS[convention],)}
    callee = callees[0] if "*" not in callees[0] else "llm"

    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=phases,
              suppress_health_check=list(HealthCheck), print_blob=False,
              verbosity=Verbosity.quiet)
    @given(st.data())
    def run(data):
        source = data.draw(workflow_sources(entry=entry, callee=callee, convention=convention),
                           label="workflow")
        check_roundtrip(source)
        wf = parse_workflow(source, entry=entry, **reading)
        patch = data.draw(patches(wf, (name,), library=library), label="patch")
        # After the first violation Hypothesis only shrinks it: those replays are not counted.
        counting = not stats.violations
        if counting:
            stats.tried += 1
            if on_example:
                on_example()
        try:
            result = check_application(wf, patch.operator, patch.target, patch.args,
                                       library=library)
        except PropertyViolation as err:
            stats.violations = 1
            stats.falsifying = str(err)  # the last one recorded is the shrunk example
            raise
        if not counting:
            return
        if isinstance(result, Applied):
            stats.applied += 1
        elif isinstance(result, NotApplicable):
            stats.not_applicable += 1
        else:
            stats.invalid += 1
            stats.invalid_reasons[result.reason.value] = stats.invalid_reasons.get(result.reason.value, 0) + 1

    try:
        run()
    except PropertyViolation:
        pass  # recorded in stats (the last recorded example is the shrunk one)
    except Exception as err:  # noqa: BLE001 - a crash in generation or parsing is a violation too
        stats.violations += 1
        stats.falsifying = f"{type(err).__name__}: {err}"
    return stats


def fuzz_parser(*, examples: int, seed: int, on_example: Callable[[], None] | None = None) -> OperatorStats:
    """hypothesmith-generated modules: the workflow parser ends cleanly (a model or a
    `WorkflowError`), and libcst round-trips every module it accepts."""
    from hypothesis import HealthCheck, Verbosity, given, settings
    from hypothesis import seed as hypothesis_seed

    from hypothesis import strategies as st

    from flowmend.engine._workflow import WorkflowError, parse_workflow

    stats = OperatorStats("parser (hypothesmith)")
    if examples < 1:
        return stats
    try:
        import hypothesmith
    except ImportError:
        stats.falsifying = "hypothesmith is not installed: pip install hypothesmith"
        return stats

    # Half the modules get an entry function appended, so that parsing goes past "no entry".
    entry_suffix = "\n\ndef solve(task):\n    return llm(task.prompt)\n"
    modules = st.tuples(hypothesmith.from_node() | hypothesmith.from_grammar(), st.booleans())

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False,
              verbosity=Verbosity.quiet)
    @given(modules)
    def run(drawn):
        source, with_entry = drawn
        if with_entry:
            source = source.rstrip("\n") + entry_suffix if source.strip() else entry_suffix.lstrip()
        counting = not stats.violations  # shrink replays are not counted
        if counting:
            stats.tried += 1
            if on_example:
                on_example()
        try:
            parse_workflow(source)
            stats.applied += counting
        except WorkflowError:
            stats.not_applicable += counting
            return  # refused cleanly: nothing will edit it, so its round trip does not matter
        except Exception as err:  # noqa: BLE001
            stats.violations = 1
            stats.falsifying = f"parse_workflow raised {type(err).__name__}: {err}\n--- source\n{source}"
            raise PropertyViolation(stats.falsifying) from err
        try:
            module = cst.parse_module(source)
        except Exception:  # noqa: BLE001 - not libcst-parsable: parse_workflow said so cleanly
            return
        if module.code != source:
            if split_footer(module.code)[0] == split_footer(source)[0]:
                # A known libcst loss (blank lines before an indented last line), which
                # parse_workflow refuses up front; counted, not a violation.
                if counting:
                    key = "libcst-footer"
                    stats.invalid_reasons[key] = stats.invalid_reasons.get(key, 0) + 1
                return
            stats.violations = 1
            stats.falsifying = f"libcst round trip changed the source:\n{source!r}"
            raise PropertyViolation(stats.falsifying)

    try:
        run()
    except PropertyViolation:
        pass
    return stats


def fuzz(*, examples: int, seed: int, entry: str = "solve", callees: Sequence[str] = ("llm",),
         operators: Sequence[str] | None = None, parser_examples: int | None = None,
         on_example: Callable[[], None] | None = None, shrink: bool = True,
         library: OperatorLibrary | None = None, convention: str = "default") -> FuzzReport:
    """Fuzz every (or the named) operators of `library` (default: the built-ins), then the
    parser; nothing here raises on a violation."""
    start = time.monotonic()
    library = default_library() if library is None else library
    names = list(operators or library.names())
    stats = [
        fuzz_operator(n, examples=examples, seed=seed, entry=entry, callees=callees,
                      on_example=on_example, shrink=shrink, library=library,
                      convention=convention)
        for n in names
    ]
    parser = fuzz_parser(examples=examples if parser_examples is None else parser_examples, seed=seed,
                         on_example=on_example)
    return FuzzReport(examples, seed, stats, parser, time.monotonic() - start, convention)
