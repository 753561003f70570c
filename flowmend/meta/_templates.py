"""The optimizer's prompt templates as data with lineage: a model rewrites them, the rewrites
that keep their fields join a pool, and a study searches over the pool.

Every template the meta model proposes is kept, accepted or not, with its parent, the model
that wrote it and why it was rejected: so a rejected or repeated proposal is never proposed
again (the pool's texts and the rejected texts are both looked up before asking again).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flowmend._files import write_json_atomically
from flowmend.engine import CHOICE_FIELDS, TEXT_FIELDS, OptimizerConfig, check_template

POOL_SCHEMA = "flowmend.template-pool/1"
FIELDS = {"choice_template": CHOICE_FIELDS, "text_template": TEXT_FIELDS}
from flowmend.meta._space import DEFAULT_TEMPLATE as DEFAULT_ID

MUTATION_PROMPT = (
    "Below is a prompt template that a small language model reads. Rewrite it so that the small "
    "model answers better: clearer, shorter, more direct. Keep every placeholder in curly "
    "braces exactly as it is ({fields}); add no other braces.\n\n"
    "Template:\n<<<\n{template}\n>>>\n\n"
    "Write only the new template."
)


@dataclass(frozen=True)
class TemplateVariant:
    """One proposed template.

    Attributes:
        id: the sha256 of its field and text, shortened.
        field: ``choice_template`` or ``text_template``.
        text: the template.
        parent: the id it was rewritten from.
        model: the model that wrote it.
        accepted: whether it keeps its fields (and so joined the pool).
        reason: why not, when not.
    """

    id: str
    field: str
    text: str
    parent: str
    model: str
    accepted: bool
    reason: str = ""


def variant_id(field: str, text: str) -> str:
    return hashlib.sha256(f"{field}\n{text}".encode()).hexdigest()[:12]


class TemplatePool:
    """The variants of both templates, read from and written to one JSON file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.variants: dict[str, TemplateVariant] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text())
            for v in data.get("variants", ()):
                self.variants[v["id"]] = TemplateVariant(**v)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.path, {"schema": POOL_SCHEMA, "variants": [
            asdict(v) for v in self.variants.values()]})

    def choices(self, field: str, base: OptimizerConfig) -> dict[str, str]:
        """Id → text of what a trial may pick for `field`: the base's own first, then the
        accepted variants."""
        return {DEFAULT_ID: getattr(base, field), **{
            v.id: v.text for v in sorted(self.variants.values(), key=lambda v: v.id)
            if v.field == field and v.accepted}}

    def mutate(self, broker, field: str, base: OptimizerConfig, *, model: str, tries: int
               ) -> list[TemplateVariant]:
        """Ask the meta model for `tries` rewrites of `base`'s `field` template (one
        request, `tries` samples); every new answer is kept, and those that keep their fields
        are accepted."""
        from flowmend.llm import Request

        allowed, required = FIELDS[field]
        parent = getattr(base, field)
        prompt = MUTATION_PROMPT.format(fields=", ".join("{" + f + "}" for f in allowed),
                                        template=parent)
        made = []
        answers = broker.call(Request(prompt=prompt, max_tokens=400, temperature=1.0,
                                      n=tries)).texts
        for answer in answers:
            text = _unwrap(answer)
            vid = variant_id(field, text)
            if vid in self.variants or text == parent:
                continue  # already proposed (accepted or rejected): never again
            try:
                check_template(field, text, allowed, required)
                variant = TemplateVariant(vid, field, text, DEFAULT_ID, model, True)
            except ValueError as err:
                variant = TemplateVariant(vid, field, text, DEFAULT_ID, model, False, str(err))
            self.variants[vid] = variant
            made.append(variant)
        self.save()
        return made

    def digest(self) -> str:
        accepted = sorted(v.id for v in self.variants.values() if v.accepted)
        return hashlib.sha256(json.dumps(accepted).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"schema": POOL_SCHEMA, "variants": [asdict(v) for v in self.variants.values()]}


def _unwrap(answer: str) -> str:
    """The template inside a model's answer: without the <<< >>> fences or a code fence."""
    text = answer.strip()
    for fence in (("<<<", ">>>"), ("```", "```")):
        if text.startswith(fence[0]) and text.endswith(fence[1]) and len(text) > 6:
            text = text[len(fence[0]):-len(fence[1])].strip()
    return text
