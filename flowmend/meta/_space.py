"""What the meta loop searches: a set-up (seed workflow plus `RepairConfig`), mapped onto
Optuna's categorical, log-float and conditional parameters.

Only what changes how the inner loop spends a fixed budget is searched: the seed template, the
loop's shape (iterations × proposals), the mode, the optimizer's menu size and temperature, and
the verifier's weights, with the model's self-written checks switched on or off. The budget,
the models and the library stay fixed for a study; they are part of its identity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from flowmend.engine import RepairConfig
from flowmend.errors import UserError
from flowmend.meta._weights import suggest_weights, weight_params
from flowmend.verifier import ScoreWeights

DEFAULT_TEMPLATE = "default"  # the base config's own template, in a template choice
# (iterations, proposals): from one wide round to several narrow ones.
SHAPES = ("0x1", "1x4", "2x2", "2x4", "3x3", "4x2", "4x4", "6x2")
MENU_SIZES = (4, 6, 8, 12, 16)
MODES = ("prompt", "structure")


@dataclass(frozen=True)
class Setup:
    """One candidate set-up of the inner loop: the seed it starts from and its config.

    Attributes:
        seed: the seed workflow's id (`flowmend.seeds`) or a label for `seed_source`.
        seed_source: the seed workflow's text.
        config: the repair config (budget and rng seed are the study's).
    """

    seed: str
    seed_source: str
    config: RepairConfig

    def digest(self) -> str:
        """sha256 over the seed's text and the config's digest: one per distinct set-up."""
        text = json.dumps({
            "seed_sha256": hashlib.sha256(self.seed_source.encode()).hexdigest(),
            "config": self.config.digest,
        }, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def library_digest(self) -> str:
        return self.config.operators.digest

    def to_json(self) -> dict[str, Any]:
        return {"schema": "flowmend.setup/1", "seed": self.seed, "seed_source": self.seed_source,
                "config": self.config.to_json(), "digest": self.digest()}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, where: str) -> "Setup":
        if not isinstance(data, dict) or data.get("schema") != "flowmend.setup/1":
            raise UserError("not a flowmend.setup/1 object", where=where)
        try:
            setup = cls(seed=str(data["seed"]), seed_source=str(data["seed_source"]),
                        config=RepairConfig.from_json(data["config"]))
        except (KeyError, ValueError, TypeError) as err:
            raise UserError(f"the set-up no longer validates: {err}", where=where) from None
        if data.get("digest") not in (None, setup.digest()):
            raise UserError("the set-up's digest does not match its contents", where=where)
        return setup


@dataclass(frozen=True)
class SearchSpace:
    """The parameters a trial suggests, around a base config whose values are the defaults.

    Attributes:
        seeds: seed id → source; the first is the default.
        base: the config every trial starts from (budget, rng seed, library, ...); its own
            values are what the first, enqueued trial uses.
        templates: per optimizer template field (``choice_template``, ``text_template``),
            variant id → text, ``default`` (the base's own) included; a field with one
            variant is not searched.
    """

    seeds: dict[str, str]
    base: RepairConfig = field(default_factory=RepairConfig)
    templates: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise UserError("the search space needs at least one seed workflow")

    def default_params(self) -> dict[str, Any]:
        """The parameters of the base set-up, enqueued as trial 0 so the search can only
        improve on it."""
        b = self.base
        shape = f"{b.iterations}x{b.proposals}"
        if shape not in SHAPES:
            raise UserError(f"the base config's shape {shape} is not one of {', '.join(SHAPES)}")
        params = {"seed": next(iter(self.seeds)), "shape": shape, "mode": b.mode,
                  "menu_size": b.optimizer.menu_size, "temperature": b.optimizer.temperature,
                  **weight_params(b.weights)}
        for name, variants in self.templates.items():
            if len(variants) > 1:
                params[name] = DEFAULT_TEMPLATE
        return params

    def suggest(self, trial) -> Setup:
        """Ask an Optuna trial for every parameter and build its set-up."""
        seed = trial.suggest_categorical("seed", list(self.seeds))
        shape = trial.suggest_categorical("shape", list(SHAPES))
        iterations, proposals = (int(x) for x in shape.split("x"))
        mode = trial.suggest_categorical("mode", list(MODES))
        menu_size = trial.suggest_categorical("menu_size", list(MENU_SIZES))
        temperature = trial.suggest_float("temperature", 0.2, 1.5)
        texts = {name: variants[trial.suggest_categorical(name, list(variants))]
                 for name, variants in self.templates.items() if len(variants) > 1}
        return self.setup(seed, iterations=iterations, proposals=proposals, mode=mode,
                          menu_size=menu_size, temperature=temperature,
                          weights=suggest_weights(trial, self.base.weights), **texts)

    def setup(self, seed: str, *, weights: ScoreWeights | None = None, **shape: Any) -> Setup:
        """A set-up from explicit values (missing ones are the base's)."""
        b = self.base
        optimizer = replace(b.optimizer, **{
            name: shape.pop(name) for name in ("menu_size", "temperature", "choice_template",
                                               "text_template") if name in shape})
        config = replace(b, optimizer=optimizer, weights=weights or b.weights, **shape)
        return Setup(seed=seed, seed_source=self.seeds[seed], config=config)
