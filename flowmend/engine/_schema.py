"""The published JSON schema of patches, generated from the operators of a library.

`python -m flowmend.engine._schema` rewrites `flowmend/schemas/patch.schema.json`; a test
checks the committed file equals what the built-in library generates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from flowmend.engine._library import OperatorLibrary, default_library
from flowmend.engine._patch import PATCH_SCHEMA

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "patch.schema.json"

# Operators may narrow this with a `TARGET_SCHEMA` class attribute.
DEFAULT_TARGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "the site of the edit, as the operator lists it (e.g. {\"step\": \"code\"})",
    "properties": {"step": {"type": "string", "description": "a step id (`flowmend steps`)"}},
    "required": ["step"],
    "additionalProperties": {"type": ["string", "integer"]},
}


def target_schema(cls: type) -> dict[str, Any]:
    return getattr(cls, "TARGET_SCHEMA", DEFAULT_TARGET_SCHEMA)


def patch_schema(library: OperatorLibrary | None = None) -> dict[str, Any]:
    """A draft 2020-12 schema: one patch, or a list of them; `oneOf` per operator of `library`
    (default: the built-ins)."""
    variants = []
    for cls in (default_library() if library is None else library).operators():
        variants.append(
            {
                "title": cls.name,
                "description": cls.DESCRIPTION,
                "type": "object",
                "properties": {
                    "schema": {"const": PATCH_SCHEMA},
                    "operator": {"const": cls.name},
                    "target": target_schema(cls),
                    "args": cls.args_schema(),
                },
                "required": ["schema", "operator", "target"],
                "additionalProperties": False,
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://flowmend.dev/schemas/patch.schema.json",
        "title": PATCH_SCHEMA,
        "description": (
            "A flowmend patch: an operator, its target and its arguments. A patch file holds "
            "one patch or a list of patches, applied in order."
        ),
        "oneOf": [
            {"$ref": "#/$defs/patch"},
            {"type": "array", "items": {"$ref": "#/$defs/patch"}, "minItems": 1},
        ],
        "$defs": {"patch": {"oneOf": variants}},
    }


def render() -> str:
    return json.dumps(patch_schema(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if argv == ["--check"]:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{SCHEMA_PATH} is out of date: run python -m flowmend.engine._schema")
            return 1
        return 0
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    from flowmend._files import write_atomically

    write_atomically(SCHEMA_PATH, text)
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
