"""The seed workflows the bench and the main job start from, shipped as package data by id.

`load("plan_then_code")` is the source of ``plan_then_code.py`` here, so an installed wheel
has them; ``examples/workflows/`` holds user-facing copies of the same files.
"""

from __future__ import annotations

from importlib import resources

from flowmend import _api
from flowmend.errors import UserError


def ids() -> tuple[str, ...]:
    """Every seed's id, sorted: the file names without ``.py``."""
    return tuple(sorted(
        entry.name[: -len(".py")]
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".py") and not entry.name.startswith("_")
    ))


def load(seed_id: str) -> str:
    """The source of seed `seed_id`; a `UserError` naming the known ids when there is none."""
    known = ids()
    if seed_id not in known:
        raise UserError(f"unknown seed workflow {seed_id!r}; known: {', '.join(known)}")
    return resources.files(__name__).joinpath(f"{seed_id}.py").read_text(encoding="utf-8")


_api.public_api(__name__, globals(), {_api.HERE: ("ids", "load")})
