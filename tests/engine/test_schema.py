"""The published patch schema is generated from the operators, and the committed file is current."""

from __future__ import annotations

import json

import pytest

from flowmend.engine import PATCH_SCHEMA, default_library, patch_schema
from flowmend.engine._schema import SCHEMA_PATH, render


def test_committed_schema_is_up_to_date():
    assert SCHEMA_PATH.exists(), "run: python -m flowmend.engine._schema"
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), (
        "flowmend/schemas/patch.schema.json is stale: run python -m flowmend.engine._schema"
    )


def test_schema_has_one_variant_per_operator_with_its_args_schema():
    schema = patch_schema()
    variants = schema["$defs"]["patch"]["oneOf"]
    by_name = {v["properties"]["operator"]["const"]: v for v in variants}
    assert sorted(by_name) == sorted(c.name for c in default_library().operators())
    for cls in default_library().operators():
        variant = by_name[cls.name]
        assert variant["properties"]["schema"] == {"const": PATCH_SCHEMA}
        assert variant["properties"]["args"] == cls.args_schema()
        assert variant["additionalProperties"] is False
    json.dumps(schema)  # plain JSON data


def test_menu_patches_validate_against_the_published_schema():
    jsonschema = pytest.importorskip("jsonschema")  # present with vLLM; not a flowmend dependency
    from pathlib import Path

    from flowmend.engine import menu, parse_workflow

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    seed = Path(__file__).resolve().parents[2] / "examples" / "workflows" / "generate_then_review.py"
    items = menu(parse_workflow(seed.read_text()))
    patches = [item.patch.to_json() for item in items]
    assert patches
    for patch in patches:
        validator.validate(patch)
    validator.validate(patches)  # a patch file may hold a list
    assert not validator.is_valid({**patches[0], "operator": "no-such-op"})
    assert not validator.is_valid({**patches[0], "target": {}})
    assert not validator.is_valid([])
