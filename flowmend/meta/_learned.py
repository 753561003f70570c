"""A learned set-up as a value and a directory: what `meta.learn` returns, what `flowmend
repair --setup DIR` and `flowmend bench --setup DIR` read.

The directory holds ``manifest.json``: every digest (set-up, config, library, seed), the
split hashes, the model names, the versions and what the search cost. Beside it are
``setup.json`` and ``default.json``, the learned and the default set-ups in full. It is
written to a temporary sibling and renamed into place, so no half-written set-up is ever read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowmend._files import write_json_atomically
from flowmend.errors import UserError
from flowmend.meta._space import Setup

MANIFEST_SCHEMA = "flowmend.learned-setup/1"


@dataclass(frozen=True)
class LearnedSetup:
    """The outcome of a meta search.

    Attributes:
        setup: the chosen set-up (seed and config).
        default: the set-up the search started from (trial 0).
        models: the program and optimizer models it was learned with.
        splits: hashes of the train and val task ids.
        search: how it was chosen: the finalists' figures, the winner's curse, the
            cost–accuracy front, the verifier-weight fit. Figures on the splits used to
            choose, never results.
        cost: what the search spent: evaluations, tokens, wall seconds, trials.
    """

    setup: Setup
    default: Setup
    models: dict[str, str]
    splits: dict[str, str]
    search: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)

    @property
    def library_digest(self) -> str:
        return self.setup.library_digest

    def manifest(self) -> dict[str, Any]:
        from flowmend import __version__

        return {
            "schema": MANIFEST_SCHEMA,
            "setup_digest": self.setup.digest(),
            "default_digest": self.default.digest(),
            "config_digest": self.setup.config.digest,
            "library_digest": self.library_digest,
            "seed": self.setup.seed,
            "models": self.models,
            "splits": self.splits,
            "versions": {"flowmend": __version__, "optuna": _optuna_version()},
            "search": self.search,
            "cost": self.cost,
        }

    def save(self, directory: str | Path) -> Path:
        """Write the directory whole, or not at all (a temporary sibling, then a rename)."""
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            write_json_atomically(tmp / "setup.json", self.setup.to_json())
            write_json_atomically(tmp / "default.json", self.default.to_json())
            write_json_atomically(tmp / "manifest.json", self.manifest())
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, directory: str | Path, *, model: str | None = None) -> "LearnedSetup":
        """Read a set-up directory; a `UserError` names what is wrong in one line: not a
        set-up directory, operators that changed since it was learned (the config's library
        digest), another model than `model`, or a set-up that no longer validates."""
        root = Path(directory)
        where = str(root)
        try:
            manifest = json.loads((root / "manifest.json").read_text())
            setup_data = json.loads((root / "setup.json").read_text())
            default_data = json.loads((root / "default.json").read_text())
        except OSError:
            raise UserError("not a learned set-up directory (manifest.json, setup.json and "
                            "default.json are needed)", where=where) from None
        except json.JSONDecodeError as err:
            raise UserError(f"a set-up file is not JSON: {err.msg}", where=where) from None
        if manifest.get("schema") != MANIFEST_SCHEMA:
            raise UserError(f"manifest.json is not {MANIFEST_SCHEMA}", where=where)
        # A config whose library's operators changed, or that no longer validates, is refused
        # here with the reason (RepairConfig.from_json checks the library's digest).
        setup = Setup.from_json(setup_data, where=f"{where}/setup.json")
        default = Setup.from_json(default_data, where=f"{where}/default.json")
        if setup.digest() != manifest.get("setup_digest"):
            raise UserError("setup.json does not match the manifest's digest", where=where)
        models = dict(manifest.get("models") or {})
        if model is not None and models.get("program") not in (None, model):
            raise UserError(f"learned with model {models.get('program')!r}, not {model!r}; "
                            "pass that --model or learn a set-up for this one", where=where)
        return cls(setup=setup, default=default, models=models,
                   splits=dict(manifest.get("splits") or {}),
                   search=dict(manifest.get("search") or {}),
                   cost=dict(manifest.get("cost") or {}))


def _optuna_version() -> str | None:
    try:
        import optuna
    except ImportError:
        return None
    return optuna.__version__
