import pytest

from flowmend.llm import ModelConfig, ModelError, Price, RecordingBackend, Request, open_models

from .backends import EchoBackend


@pytest.fixture
def replay_file(tmp_path):
    path = tmp_path / "calls.jsonl"
    RecordingBackend(EchoBackend(), path).generate([Request(prompt="hi")])
    return str(path)


def test_equal_program_and_optimizer_configs_share_one_engine_and_broker(replay_file):
    config = ModelConfig(kind="replay", replay_path=replay_file)
    with open_models(config, ModelConfig(kind="replay", replay_path=replay_file)) as models:
        assert models.shared and models.program.backend is models.optimizer.backend
        assert models.optimizer.call(Request(prompt="hi")).text == "ih"


def test_different_configs_get_their_own(replay_file):
    with open_models(
        ModelConfig(kind="replay", replay_path=replay_file),
        ModelConfig(kind="replay", replay_path=replay_file, seed=1),
    ) as models:
        assert not models.shared and models.program.backend is not models.optimizer.backend


def test_config_from_json_and_its_errors(replay_file):
    config = ModelConfig.from_json(
        {"kind": "openai", "model": "gpt-x", "base_urls": "http://h:1/v1",
         "prices": {"models": {"gpt-x": [0.5, 2]}}}
    )
    assert config.base_urls == ("http://h:1/v1",)
    assert config.prices.price("gpt-x") == Price(0.5, 2.0)
    recording = ModelConfig.from_json(
        {"kind": "replay", "replay_path": replay_file, "record": {"kind": "vllm"}}
    )
    assert recording.record == ModelConfig(kind="vllm")
    with pytest.raises(ModelError, match="unknown model setting"):
        ModelConfig.from_json({"kind": "vllm", "modle": "x"})
    with pytest.raises(ModelError, match="unknown backend 'llamacpp'"):
        ModelConfig(kind="llamacpp")
    with pytest.raises(ModelError, match="needs a replay file"):
        ModelConfig(kind="replay")
