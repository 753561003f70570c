"""The task the inner loop works on: what a deployment has, and nothing more.

`Task` deliberately has no field for hidden tests. The benchmark keeps ground truth beside it
(`flowmend.bench`), never inside it, so nothing reachable from the inner loop can read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Task:
    """One problem instance as a deployment sees it.

    Attributes:
        task_id: a stable id such as ``HumanEval/0`` or ``Mbpp/11``.
        prompt: the text given to the workflow (a HumanEval signature + docstring, an MBPP
            description with the function signature it must define).
        entry_point: the function the produced code must define.
        visible_tests: deployable checks, each a Python snippet such as
            ``assert add(1, 2) == 3``; they may reference only ``entry_point``'s function.
        metadata: free-form, JSON-serialisable, never ground truth.
    """

    task_id: str
    prompt: str
    entry_point: str
    visible_tests: tuple[str, ...] = ()
    metadata: tuple[tuple[str, Any], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["visible_tests"] = list(self.visible_tests)
        data["metadata"] = dict(self.metadata)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Task":
        known = {"task_id", "prompt", "entry_point", "visible_tests", "metadata"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown task field(s): {', '.join(sorted(unknown))}")
        return cls(
            task_id=str(data["task_id"]),
            prompt=str(data["prompt"]),
            entry_point=str(data["entry_point"]),
            visible_tests=tuple(str(t) for t in data.get("visible_tests", ())),
            metadata=tuple(sorted(dict(data.get("metadata", {})).items())),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)
