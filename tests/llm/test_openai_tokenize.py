"""The openai backend counts prompt tokens through a server's `POST /tokenize` (vLLM's
tokenizer endpoint), here a small loopback server that answers it the way vLLM does: with the
embedded model's own tokenizer and chat template."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flowmend.llm import ModelConfig, Request, open_backend, prepare, prompt_bytes_bound


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(prepare("smollm2")))


class _Server:
    """Serves `/tokenize` as vLLM's server does (chat: messages with the generation prompt;
    completion: the prompt with special tokens), or answers 404 when `missing`."""

    def __init__(self, tokenizer, missing=False):
        self.bodies = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append((self.path, body))
                if missing or self.path != "/tokenize":
                    self.send_error(404)
                    return
                if "messages" in body:
                    ids = tokenizer.apply_chat_template(
                        body["messages"], add_generation_prompt=body.get("add_generation_prompt", True),
                        tokenize=True)
                    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "input_ids") else ids
                else:
                    ids = tokenizer(body["prompt"])["input_ids"]
                reply = json.dumps({"count": len(ids), "max_model_len": 2048, "tokens": list(ids)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_chat_and_plain_prompts_are_counted_by_the_server_exactly(tokenizer):
    server = _Server(tokenizer)
    chat = open_backend(ModelConfig(kind="openai", model="smollm2", base_urls=(server.url,)))
    plain = open_backend(ModelConfig(kind="openai", model="smollm2", base_urls=(server.url,),
                                     chat=False))
    try:
        assert not chat.exact_prompt_tokens  # nothing counted yet
        request = Request(prompt="Write a Python function add(a, b).")
        rendered = tokenizer.apply_chat_template(request.conversation(), add_generation_prompt=True,
                                                 tokenize=True)
        rendered = rendered["input_ids"] if hasattr(rendered, "input_ids") else rendered
        assert chat.count_prompt_tokens(request) == len(rendered) and chat.exact_prompt_tokens
        assert server.bodies[-1] == ("/tokenize", {
            "model": "smollm2", "messages": [{"role": "user", "content": request.prompt}],
            "add_generation_prompt": True})
        assert len(rendered) < prompt_bytes_bound(request)  # what the bound would have booked
        assert plain.count_prompt_tokens(request) == len(tokenizer(request.prompt)["input_ids"])
        assert server.bodies[-1][1] == {"model": "smollm2", "prompt": request.prompt}
    finally:
        chat.close(), plain.close(), server.close()


def test_a_server_without_a_tokenize_endpoint_gets_the_byte_bound_and_is_not_asked_again(tokenizer):
    server = _Server(tokenizer, missing=True)
    backend = open_backend(ModelConfig(kind="openai", model="smollm2", base_urls=(server.url,)))
    try:
        request = Request(prompt="Write add(a, b).")
        assert backend.count_prompt_tokens(request) == prompt_bytes_bound(request)
        assert backend.count_prompt_tokens(request) == prompt_bytes_bound(request)
        assert len(server.bodies) == 1 and not backend.exact_prompt_tokens
    finally:
        backend.close(), server.close()
