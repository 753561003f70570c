"""The gate a library passes: each operator's own examples and the fuzz properties, as data.

`check_library` is what `flowmend ops test PATH` runs (after `fixit test`): the built-ins pass
it, and an out-of-tree or evolved operator joins a library only if it does too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowmend.engine._library import OperatorLibrary
from flowmend.engine.testing import check_case
from flowmend.operators._fuzz import fuzz_operator


@dataclass(frozen=True)
class Failure:
    """One failed check of one operator.

    Attributes:
        operator: the operator's name.
        case: which check: ``EXAMPLES[0]``, ``NOT_APPLICABLE[1]`` or ``fuzz``.
        detail: what failed (the assertion, or the property and its falsifying example).
    """

    operator: str
    case: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"operator": self.operator, "case": self.case, "detail": self.detail}


def check_library(
    library: OperatorLibrary,
    *,
    examples: bool = True,
    fuzz_examples: int = 20,
    seed: int = 0,
    on_operator: Callable[[str], None] | None = None,
) -> list[Failure]:
    """Run every operator of `library` through its `EXAMPLES` and `NOT_APPLICABLE` cases
    (when `examples`) and `fuzz_examples` random applications checked against the operator
    properties (none when 0). Returns what failed; an empty list means the library passes.

    `on_operator(name)` is called as each operator starts (for a progress bar).
    """
    failures: list[Failure] = []
    for cls in library.operators():
        if on_operator is not None:
            on_operator(cls.name)
        if examples:
            for attr, applicable in (("EXAMPLES", True), ("NOT_APPLICABLE", False)):
                for i, case in enumerate(getattr(cls, attr)):
                    try:
                        check_case(cls, case, applicable=applicable)
                    except Exception as err:  # noqa: BLE001 - a failed case, reported as data
                        detail = str(err) if isinstance(err, AssertionError) else \
                            f"{type(err).__name__}: {err}"
                        failures.append(Failure(cls.name, f"{attr}[{i}]", detail))
        if fuzz_examples > 0:
            stats = fuzz_operator(cls.name, examples=fuzz_examples, seed=seed, library=library)
            if stats.violations:
                failures.append(Failure(cls.name, "fuzz", stats.falsifying or "a property failed"))
    return failures
