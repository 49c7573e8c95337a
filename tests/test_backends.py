"""Generation backends with the real small model: in process (transformers) and over HTTP against a real
OpenAI-compatible server (`transformers serve`) started on loopback by the test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from loguru import logger

from moss_data.llm import BackendError, SamplingParams
from moss_data.llm.http_backend import HTTPBackend
from moss_data.llm.transformers_backend import TransformersBackend
from moss_data.llm.models import local_smollm2

PROMPTS = [
    [{"role": "user", "content": "Write one sentence about the sea."}],
    [{"role": "user", "content": "What is 2+2? Answer with the number only."}],
    [{"role": "user", "content": "Name a color."}],
]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return local_smollm2(Path(__file__).resolve().parent.parent / "data" / "models" / "smollm2-135m-instruct")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dir):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = Path(sys.executable).parent / "transformers"
    proc = subprocess.Popen(
        [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), str(model_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                pytest.fail("transformers serve exited early")
            time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not come up in 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_transformers_backend_batched(model_dir):
    backend = TransformersBackend(model_dir, batch_size=2)
    gens = backend.chat(PROMPTS, SamplingParams(max_new_tokens=32, temperature=0))
    assert len(gens) == 3
    assert "4" in gens[1].text
    for g in gens:
        assert g.text.strip() and g.finish_reason in {"stop", "length"} and g.completion_tokens > 0
    # greedy decoding: the batch gives what each prompt gives alone (left padding is handled)
    alone = backend.chat(PROMPTS[:1], SamplingParams(max_new_tokens=32, temperature=0))
    assert alone[0].text == gens[0].text


def test_transformers_backend_reports_truncation(model_dir):
    backend = TransformersBackend(model_dir)
    g = backend.chat(PROMPTS[:1], SamplingParams(max_new_tokens=3, temperature=0))[0]
    assert g.finish_reason == "length" and g.completion_tokens == 3


def test_stop_strings_and_prefill(model_dir):
    backend = TransformersBackend(model_dir, batch_size=2)
    params = SamplingParams(max_new_tokens=48, temperature=0)
    free = backend.chat(PROMPTS[:1], params)[0]
    word = free.text.split()[2]
    stopped = backend.chat(PROMPTS[:1], params.model_copy(update={"stop": [word]}))[0]
    # the stop string ends the text and is cut from it; the text before it is what greedy decoding wrote
    assert stopped.finish_reason == "stop" and free.text.startswith(stopped.text) and word not in stopped.text
    assert stopped.completion_tokens < free.completion_tokens
    prefix = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "The answer is"}]
    cont = backend.chat([prefix, PROMPTS[2]], params)
    assert "4" in cont[0].text and not cont[0].text.startswith("The answer is")  # continued, not restarted
    assert cont[1].text == backend.chat([PROMPTS[2]], params)[0].text  # plain and prefilled mix in one batch
    raw = backend.complete(["The capital of France is"], SamplingParams(max_new_tokens=8, temperature=0))[0]
    assert "Paris" in raw.text


def test_http_backend_against_a_real_server(server, model_dir):
    backend = HTTPBackend(server, str(model_dir), concurrency=3, timeout_s=60)
    gens = backend.chat(PROMPTS, SamplingParams(max_new_tokens=24, temperature=0))
    assert [g.finish_reason != "error" for g in gens] == [True] * 3
    assert all(g.text.strip() for g in gens) and "4" in gens[1].text
    assert all(g.prompt_tokens > 0 and g.completion_tokens > 0 for g in gens)
    # stop strings are cut whatever the server returns; plain completions go to /v1/completions
    word = gens[0].text.split()[2]
    stopped = backend.chat(PROMPTS[:1], SamplingParams(max_new_tokens=24, temperature=0, stop=[word]))[0]
    assert word not in stopped.text and gens[0].text.startswith(stopped.text.rstrip())
    raw = backend.complete(["The capital of France is"], SamplingParams(max_new_tokens=8, temperature=0))[0]
    assert raw.finish_reason != "error" and "Paris" in raw.text, raw


class FaultServer:
    """Test double, and why: a real server cannot be made to answer 429/503 on demand. This one is a real HTTP
    server on loopback (stdlib) that answers with a scripted list of status codes, then a valid completion."""

    def __init__(self, statuses: list[int]):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.statuses, self.requests = list(statuses), 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests += 1
                status = outer.statuses.pop(0) if outer.statuses else 200
                body = {"error": "scripted"} if status != 200 else {
                    "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_http_retries_429_and_5xx_then_succeeds():
    server = FaultServer([429, 503, 500])
    try:
        g = HTTPBackend(server.url, "m", max_retries=4, backoff_s=0.01).chat(PROMPTS[:1], SamplingParams())[0]
    finally:
        server.close()
    assert (g.text, g.finish_reason, server.requests) == ("ok", "stop", 4)


def test_http_client_errors_are_not_retried():
    server = FaultServer([400])
    try:
        g = HTTPBackend(server.url, "m", max_retries=4, backoff_s=5).chat(PROMPTS[:1], SamplingParams())[0]
    finally:
        server.close()
    assert g.finish_reason == "error" and g.error.startswith("HTTP 400") and server.requests == 1


def test_http_retries_then_reports_unreachable_server_and_never_logs_the_key(monkeypatch):
    monkeypatch.setenv("MOSS_TEST_API_KEY", "sk-test-secret-value-123")
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")
    try:
        backend = HTTPBackend(f"http://127.0.0.1:{free_port()}", "m", api_key_env="MOSS_TEST_API_KEY",
                              max_retries=2, backoff_s=0.01, timeout_s=2)
        g = backend.chat(PROMPTS[:1], SamplingParams(max_new_tokens=4))[0]
    finally:
        logger.remove(sink)
    assert g.finish_reason == "error" and "ConnectError" in g.error
    assert sum("retry" in line for line in lines) == 2
    assert not any("sk-test-secret" in line for line in lines)


def test_missing_api_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MOSS_NO_SUCH_KEY", raising=False)
    with pytest.raises(BackendError, match="MOSS_NO_SUCH_KEY"):
        HTTPBackend("http://127.0.0.1:1", "m", api_key_env="MOSS_NO_SUCH_KEY")
