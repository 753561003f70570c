"""The published patch schema is generated from the operators, and the committed file is current."""

from __future__ import annotations

import json

from flowmend.engine import PATCH_SCHEMA, all_operators, patch_schema
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
    assert sorted(by_name) == sorted(c.name for c in all_operators())
    for cls in all_operators():
        variant = by_name[cls.name]
        assert variant["properties"]["schema"] == {"const": PATCH_SCHEMA}
        assert variant["properties"]["args"] == cls.args_schema()
        assert variant["additionalProperties"] is False
    json.dumps(schema)  # plain JSON data
