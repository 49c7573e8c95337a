"""Any OpenAI-compatible ``/v1/chat/completions`` endpoint (``vllm serve``, ``transformers serve``, SGLang, ...):
a concurrency limit, per-request timeouts, retries with exponential backoff on 429/5xx and connection errors; the
API key comes from an environment variable and is never logged."""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

from loguru import logger

from moss_data.llm import openai_api
from moss_data.llm.base import BackendError, Generation, SamplingParams


class HTTPBackend:
    """Chat completions over HTTP. ``api_key_env`` names the variable holding the key (never the key itself)."""

    RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
    supports_json_schema = True  # OpenAI's response_format json_schema (vLLM, SGLang, OpenAI)

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        structured_outputs: bool = True,
    ):
        import httpx

        self.name = f"http:{model}"
        self.model = model
        self.supports_json_schema = structured_outputs
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        headers = {}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise BackendError(f"environment variable {api_key_env} (the API key) is not set")
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[Generation]:
        return self._map([openai_api.chat_body(c, params, params.seed + i) for i, c in enumerate(conversations)],
                         params)

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Generation]:
        return self._map([openai_api.completion_body(p, params, params.seed + i) for i, p in enumerate(prompts)],
                         params)

    def _map(self, bodies: list[dict], params: SamplingParams) -> list[Generation]:
        """Request i of a call has the seed ``params.seed + i``: candidates for one context differ."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda ib: self._one(ib[1], params, ib[0]), enumerate(bodies)))

    def _one(self, body: dict, params: SamplingParams, index: int) -> Generation:
        import httpx

        body = body | {"model": self.model}
        error = ""
        for attempt in range(self.max_retries + 1):
            try:
                r = self._client.post(openai_api.route(body), json=body)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                error = f"{type(e).__name__}: {e}"
            else:
                if r.status_code == 200:
                    return openai_api.parse(r.json(), params)
                error = f"HTTP {r.status_code}: {r.text[:200]}"
                if r.status_code not in self.RETRY_STATUS:
                    break
            if attempt < self.max_retries:
                delay = self.backoff_s * 2**attempt * (0.5 + random.random())
                logger.warning(f"{self.name}: request {index} failed ({error}); retry {attempt + 1} in {delay:.1f}s")
                time.sleep(delay)
        return Generation(text="", finish_reason="error", error=error)
