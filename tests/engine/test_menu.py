"""The menu of applicable edits: non-empty on every seed, stable, and every item applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowmend.engine import Applied, apply_patch, menu, parse_workflow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"
SEEDS = [
    ("single_shot.py", ("llm",)),
    ("plan_then_code.py", ("llm",)),
    ("generate_then_review.py", ("llm",)),
    ("async_plan_then_code.py", ("llm",)),
    ("class_based.py", ("self.generate",)),
    ("long_pipeline.py", ("llm",)),
]


@pytest.fixture(scope="module", params=SEEDS, ids=[f"{n}:{c[0]}" for n, c in SEEDS])
def seed(request):
    """A seed workflow, its menu, and every item applied to it (once, shared by the tests)."""
    name, callees = request.param
    path = EXAMPLES / name
    wf = parse_workflow(path.read_text(), path=name, step_callees=callees)
    items = menu(wf)
    return wf, items, [apply_patch(wf, item.patch) for item in items]


def test_menu_is_non_empty_stable_and_uniquely_labelled(seed):
    wf, items, _ = seed
    assert items
    assert [i.label for i in items] == [i.label for i in menu(wf)]
    assert len({i.label for i in items}) == len(items)
    assert all(i.kind in ("prompt", "structure") and i.description for i in items)


def test_every_menu_item_applies_and_compiles(seed):
    wf, items, results = seed
    failures = [f"{i.label}: {r}" for i, r in zip(items, results) if not isinstance(r, Applied)]
    assert not failures, "\n".join(failures)
    for item, result in zip(items, results):
        compile(result.source, item.label, "exec")
    assert wf.module.code == wf.source  # every candidate came from the same, untouched parent


def test_no_menu_item_is_a_no_op(seed):
    """A choice that changes nothing wastes one of the optimizer's few proposals."""
    wf, items, results = seed
    no_ops = [i.label for i, r in zip(items, results) if getattr(r, "source", None) == wf.source]
    assert not no_ops, "applied but changed nothing: " + ", ".join(no_ops)


def test_menu_filters_by_kind_and_operator(seed):
    wf, items, _ = seed
    prompt_only = menu(wf, kinds=["prompt"])
    assert prompt_only and all(i.kind == "prompt" for i in prompt_only)
    some = sorted({i.patch.operator for i in items})[0]
    assert {i.patch.operator for i in menu(wf, operators=[some])} == {some}
    with pytest.raises(ValueError, match="unknown operator kind"):
        menu(wf, kinds=["bogus"])
