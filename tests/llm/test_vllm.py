"""The real vLLM engine on the embedded model, shared by the session (`model_backend`)."""

import json
import threading
import time

import pytest

from flowmend.llm import (
    Broker,
    ModelConfig,
    ModelError,
    RecordingBackend,
    ReplayBackend,
    Request,
    open_backend,
)

pytestmark = pytest.mark.model


def test_a_chat_prompt_gets_a_completion_with_token_counts_and_cost(model_backend):
    [answer] = model_backend.generate([Request(prompt="Write a Python function add(a, b).", max_tokens=48)])
    assert answer.model == "smollm2" and answer.text.strip()
    assert answer.prompt_tokens > 10  # the chat template adds a system turn
    assert 0 < answer.completion_tokens <= 48
    assert answer.cost == answer.prompt_tokens + answer.completion_tokens  # local: its tokens
    assert answer.finish_reasons[0] in ("stop", "length") and answer.latency_s > 0


def test_greedy_is_repeatable_and_stop_strings_cut(model_backend):
    req = Request(prompt="Count from 1 to 20, separated by commas.", max_tokens=40)
    first, second = model_backend.generate([req, req])
    assert first.texts == second.texts
    [cut] = model_backend.generate([Request(prompt=req.prompt, max_tokens=40, stop=("5",))])
    assert "5" not in cut.text and cut.finish_reasons == ("stop",)


def test_choice_is_constrained(model_backend):
    options = ("yes", "no", "maybe")
    answers = model_backend.generate(
        [Request(prompt=f"Is {i} an even number? Answer yes, no or maybe.", choice=options) for i in range(4)]
    )
    assert all(a.text in options for a in answers)


def test_json_schema_answers_are_valid_and_compact(model_backend):
    schema = {
        "type": "object",
        "properties": {"edit": {"type": "integer", "minimum": 1, "maximum": 9}, "why": {"type": "string", "maxLength": 40}},
        "required": ["edit", "why"],
        "additionalProperties": False,
    }
    req = Request(
        prompt="Pick the number of the best edit from 1 to 9 and say why, as JSON.",
        json_schema=json.dumps(schema),
        max_tokens=80,
    )
    [answer] = model_backend.generate([req])
    data = json.loads(answer.text)
    assert set(data) == {"edit", "why"} and 1 <= data["edit"] <= 9
    assert answer.text == json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def test_sampling_n_samples_with_the_engine_seed(model_backend):
    [answer] = model_backend.generate([Request(prompt="Name an animal.", n=3, temperature=1.0, max_tokens=12)])
    assert len(answer.texts) == 3 and len(answer.finish_reasons) == 3
    assert answer.completion_tokens >= 3


def test_plain_messages_with_a_system_turn(model_backend):
    [answer] = model_backend.generate(
        [Request(messages=(("system", "Answer with one word."), ("user", "Capital of France?")), max_tokens=8)]
    )
    assert answer.text.strip()


def test_threads_blocked_on_the_engine_form_one_batch_and_get_their_own_answers(model_backend):
    # Prompts of growing length: the prompt token count tells whose answer came back.
    requests = [Request(prompt="word " * (i + 1), max_tokens=4) for i in range(32)]
    results = {}
    # Timers far longer than any scheduling delay: only the attach rule can send the batch.
    with Broker(model_backend, max_wait_s=120.0, max_delay_s=120.0) as broker:
        barrier = threading.Barrier(32)

        def workflow(i):
            with broker.attach():
                barrier.wait()
                results[i] = broker.call(requests[i], timeout=300)

        threads = [threading.Thread(target=workflow, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        stats = broker.stats()
    assert stats.batch_sizes == (32,)
    lengths = [results[i].prompt_tokens for i in range(32)]
    assert lengths == sorted(lengths) and len(set(lengths)) == 32
    assert stats.completion_tokens == sum(r.completion_tokens for r in results.values())
    assert stats.throughput > 0


def test_record_the_engine_then_replay_it_exactly(model_backend, tmp_path):
    path = tmp_path / "engine.jsonl"
    requests = [Request(prompt="Say hello.", max_tokens=8), Request(prompt="Yes or no?", choice=("yes", "no"))]
    recorded = RecordingBackend(model_backend, path).generate(requests)
    replayed = open_backend(ModelConfig(kind="replay", replay_path=str(path))).generate(requests)
    assert replayed == recorded
    assert isinstance(open_backend(ModelConfig(kind="replay", replay_path=str(path))), ReplayBackend)


def test_a_request_for_another_model_is_refused(model_backend):
    with pytest.raises(ValueError, match="serves 'smollm2'"):
        model_backend.check(Request(prompt="x", model="gpt-4"))


def test_a_folder_that_is_not_a_model_is_one_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a model folder"):
        open_backend(ModelConfig(kind="vllm", model=str(tmp_path)))
    with pytest.raises(ModelError, match="no such model folder"):
        open_backend(ModelConfig(kind="vllm", model=str(tmp_path / "absent")))


def test_a_prompt_too_long_for_the_context_fails_alone(model_backend):
    with Broker(model_backend) as broker:
        with pytest.raises(ValueError, match="does not fit smollm2's context of 4096 tokens"):
            broker.submit(Request(prompt="word " * 5000))
        assert broker.call(Request(prompt="Hi", max_tokens=2), timeout=300).completion_tokens > 0


def test_a_short_request_is_answered_while_a_long_one_sent_earlier_still_runs(model_backend):
    # Continuous batching: the short request joins the engine's running batch and comes back
    # when it is done, not when the long one is.
    with Broker(model_backend, max_wait_s=0.0) as broker:
        long = broker.submit(Request(prompt="Count from 1 to 300, one number per line.",
                                     max_tokens=240))
        time.sleep(1.0)  # the long request is in the engine (it needs several seconds)
        short = broker.call(Request(prompt="Say hi.", max_tokens=2), timeout=300)
        assert not long.done()
        done = long.result(timeout=300)
    assert short.completion_tokens <= 2 and done.completion_tokens > 100
    assert short.latency_s < done.latency_s


def test_raw_throughput_resends_exactly_the_recorded_workload(model_backend):
    prompts = ["Name a prime number.", "Write a haiku about rain.", "Say hello in French."]
    requests = [Request(prompt=text, max_tokens=24) for text in prompts]
    model_backend.record_workload()
    try:
        answers = model_backend.generate(requests[:2]) + model_backend.generate(requests[2:])
        assert model_backend.workload_requests == 3
        raw = model_backend.raw_throughput()
    finally:
        model_backend.record_workload(on=False)
    # Greedy: the same prompts and parameters, sent all at once, make the same tokens.
    assert raw["requests"] == 3
    assert raw["completion_tokens"] == sum(a.completion_tokens for a in answers)
    assert raw["wall_s"] > 0 and raw["tokens_per_s"] > 0
    assert model_backend.workload_requests == 0


def test_prompt_tokens_are_counted_exactly_before_the_call(model_backend):
    """What the budget books for a prompt is what the engine then reports, chat template and
    all: a bare prompt, a conversation with a system turn, a long prompt and a choice."""
    requests = [
        Request(prompt="Write a Python function add(a, b).", max_tokens=2),
        Request(messages=(("system", "Be brief."), ("user", "Say hi.")), max_tokens=2),
        Request(prompt="def f(x):\n    return x * 2\n" * 40, max_tokens=2),
        Request(prompt="Is 4 even? Answer yes or no.", choice=("yes", "no")),
    ]
    counted = [model_backend.count_prompt_tokens(r) for r in requests]
    answers = model_backend.generate(requests)
    assert model_backend.exact_prompt_tokens
    assert counted == [a.prompt_tokens for a in answers]
