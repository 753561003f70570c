import json

import pytest

from flowmend.llm import (
    Broker,
    ModelConfig,
    ModelError,
    RecordingBackend,
    ReplayBackend,
    ReplayMiss,
    Request,
    open_backend,
)

from .backends import EchoBackend


def test_record_then_replay_gives_exactly_the_recorded_completions(tmp_path):
    path = tmp_path / "calls.jsonl"
    requests = [Request(prompt=f"p{i}", max_tokens=5 + i) for i in range(5)]
    requests.append(Request(messages=(("system", "s"), ("user", "u")), choice=("x", "y")))
    with Broker(RecordingBackend(EchoBackend(delay_s=0.01), path)) as broker:
        recorded = broker.generate(requests)
    assert len(path.read_text().splitlines()) == 6
    replay = ReplayBackend(path)
    assert len(replay) == 6 and replay.model == "echo-1"
    with Broker(replay) as broker:
        replayed = broker.generate(list(reversed(requests)))
    # Exact apart from the broker's own queue time.
    strip = lambda c: c.to_json() | {"queue_s": 0}  # noqa: E731
    assert [strip(c) for c in replayed] == [strip(c) for c in reversed(recorded)]


def test_a_request_recorded_twice_replays_in_order_then_repeats_the_last(tmp_path):
    path = tmp_path / "calls.jsonl"
    inner = EchoBackend()
    recorder = RecordingBackend(inner, path)
    req = Request(prompt="same", temperature=0.7)
    recorder.generate([req])
    inner.model = "echo-2"  # tells the two recordings apart
    recorder.generate([req])
    replay = ReplayBackend(path)
    assert [replay.generate([req])[0].model for _ in range(3)] == ["echo-1", "echo-2", "echo-2"]


def test_a_miss_names_the_key_and_a_prompt_excerpt(tmp_path):
    path = tmp_path / "calls.jsonl"
    RecordingBackend(EchoBackend(), path).generate([Request(prompt="known")])
    missing = Request(prompt="Write a function that reverses a linked list in place, please")
    with Broker(ReplayBackend(path)) as broker:
        with pytest.raises(ReplayMiss) as err:
            broker.call(missing)
    message = str(err.value)
    assert missing.key()[:16] in message and "reverses a linked list" in message
    assert str(path) in message


def test_bad_replay_files_are_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="no such replay file"):
        ReplayBackend(tmp_path / "absent.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"request": {"prompt": "x"}}) + "\n")
    with pytest.raises(ModelError, match=r"bad.jsonl:1: not a replay record"):
        ReplayBackend(bad)


def test_replay_config_opens_the_replay_backend(tmp_path):
    path = tmp_path / "r.jsonl"
    RecordingBackend(EchoBackend(), path).generate([Request(prompt="hello")])
    backend = open_backend(ModelConfig(kind="replay", replay_path=str(path)))
    assert isinstance(backend, ReplayBackend)
    assert backend.generate([Request(prompt="hello")])[0].text == "olleh"


def test_recording_and_replay_count_prompt_tokens_as_their_completions_report_them(tmp_path):
    path = tmp_path / "calls.jsonl"
    request = Request(prompt="one two three four", max_tokens=3)
    recording = RecordingBackend(EchoBackend(), path)
    assert recording.exact_prompt_tokens and recording.count_prompt_tokens(request) == 4
    [recorded] = recording.generate([request])
    replay = ReplayBackend(path)
    assert replay.exact_prompt_tokens
    assert replay.count_prompt_tokens(request) == recorded.prompt_tokens == 4
    with pytest.raises(ReplayMiss):  # the budget then books the byte bound; the call fails alone
        replay.count_prompt_tokens(Request(prompt="not recorded"))
