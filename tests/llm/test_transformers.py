"""The transformers backend on CPU with the embedded models: small batches, few tokens."""

import pytest

from flowmend.llm import ModelConfig, ModelError, Request, open_backend

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def smollm2_hf():
    backend = open_backend(ModelConfig(kind="transformers", model="smollm2", device="cpu"))
    yield backend
    backend.close()


def test_batched_greedy_generation_with_left_padding(smollm2_hf):
    short = Request(prompt="Hi", max_tokens=6)
    long = Request(prompt="Write a Python function that returns the square of a number.", max_tokens=6)
    together = smollm2_hf.generate([short, long])
    # Left padding must not change what a prompt gets: alone or batched, the same greedy text.
    assert [c.text for c in together] == [smollm2_hf.generate([r])[0].text for r in (short, long)]
    for c in together:
        assert 0 < c.completion_tokens <= 6 and c.prompt_tokens > 5
        assert c.cost == c.prompt_tokens + c.completion_tokens and c.model == "smollm2"


def test_sampling_n_and_stop_strings(smollm2_hf):
    [c] = smollm2_hf.generate([Request(prompt="Name a colour.", n=2, temperature=1.0, max_tokens=5)])
    assert len(c.texts) == 2 and len(c.finish_reasons) == 2
    [cut] = smollm2_hf.generate([Request(prompt="Count from 1 to 9 with commas.", max_tokens=24, stop=(",",))])
    assert "," not in cut.text


def test_choice_by_log_likelihood(smollm2_hf):
    [c] = smollm2_hf.generate(
        [Request(prompt="What is the capital of France? Answer with the city name.", choice=("Paris", "Banana"))]
    )
    assert c.text == "Paris" and c.finish_reasons == ("stop",)


def test_prompt_tokens_are_counted_exactly_before_the_call(smollm2_hf):
    requests = [
        Request(prompt="Write a Python function add(a, b).", max_tokens=2),
        Request(messages=(("system", "Be brief."), ("user", "Say hi.")), max_tokens=2),
        Request(prompt="What is the capital of France?", choice=("Paris", "Rome")),
    ]
    counted = [smollm2_hf.count_prompt_tokens(r) for r in requests]
    assert smollm2_hf.exact_prompt_tokens
    assert counted == [c.prompt_tokens for c in smollm2_hf.generate(requests)]


def test_json_schema_is_refused_with_a_reason(smollm2_hf):
    with pytest.raises(ValueError, match="does not constrain JSON"):
        smollm2_hf.check(Request(prompt="x", json_schema='{"type": "object"}'))


def test_gemma_base_model_continues_plain_text():
    gemma = open_backend(ModelConfig(kind="transformers", model="gemma3-270m", device="cpu"))
    try:
        assert gemma.chat is False and gemma.model == "gemma3-270m"
        [c] = gemma.generate([Request(prompt="def add(a, b):\n    return", max_tokens=5)])
        assert c.completion_tokens > 0 and c.prompt_tokens < 12  # no chat template around it
        with pytest.raises(ValueError, match="base model"):
            gemma.check(Request(messages=(("user", "hi"),)))
    finally:
        gemma.close()


def test_a_broken_model_folder_is_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ModelError, match="transformers cannot load this model") as err:
        open_backend(ModelConfig(kind="transformers", model=str(tmp_path), device="cpu"))
    assert "\n" not in str(err.value)
