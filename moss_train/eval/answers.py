"""A checkpoint served for the evaluation, and its answers in MOSS's format.

- :func:`served`: a synchronous backend for a checkpoint: transformers in this process, an OpenAI-compatible
  endpoint (``http``), or a vLLM server launched for the duration (``vllm``: the toolkit's launcher, then HTTP).
- :func:`answer`: tool-free replies to single prompts, batched. The prompt is MOSS's: the meta instruction (tools
  disabled), ``<|Human|>: ...<eoh>``, then the tool-free first pass every tool-free turn holds (``<|Inner
  Thoughts|>: None`` ... ``<|Results|>: None<eor>``) and ``<|MOSS|>:`` with the asked quality tag; the model writes
  the reply up to ``<eom>``. Prefilling that fixed first pass lets the replies of many prompts run as one batch (the
  chat loop's two passes would run them one by one); tool use is measured separately, through the chat loop.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from moss_data.formats import Capabilities, meta_instruction
from moss_data.llm import BackendConfig, SamplingParams
from moss_train.eval.benchmarks import STOPS, moss_prompt
from moss_train.eval.config import AnswerConfig, CheckpointSpec



@contextmanager
def served(checkpoint: CheckpointSpec, log_dir: Path):
    """Yields (backend, its config as served: a launched vLLM server appears as http)."""
    from moss_data.llm import build_backend
    from moss_data.llm.models import local_smollm2

    backend = checkpoint.serving()
    if backend.kind == "transformers" and backend.model is None:
        backend = backend.model_copy(update={"model": str(local_smollm2())})
    if backend.kind != "vllm":
        yield build_backend(backend), backend
        return
    from moss_data.llm.servers import serve_vllm

    if backend.model is None:
        backend = backend.model_copy(update={"model": str(local_smollm2())})
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    with serve_vllm(backend, checkpoint.name, Path(log_dir) / f"vllm_{checkpoint.name}.log",
                    backend.start_timeout_s) as base_url:
        http = BackendConfig(kind="http", base_url=base_url, model=checkpoint.name, timeout_s=backend.timeout_s)
        yield build_backend(http), http


def answer(backend, prompts: list[str], cfg: AnswerConfig, quality: int | None = None, seed: int = 0,
           prompt_format: str = "moss") -> list[dict]:
    """``{"reply", "finish_reason", "tokens"}`` per prompt, in order. ``chat_template``: the model's own chat
    template (a chat request), MOSS's meta instruction as the system message."""
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                            repetition_penalty=cfg.repetition_penalty, stop=STOPS, seed=seed)
    if prompt_format == "chat_template":
        system = meta_instruction(Capabilities())
        gens = backend.chat([[{"role": "system", "content": system}, {"role": "user", "content": p}]
                             for p in prompts], params)
    else:
        gens = backend.complete([moss_prompt(p, (), quality) for p in prompts], params)  # one tool-free turn
    return [{"reply": g.text.strip(), "finish_reason": g.finish_reason, "tokens": g.completion_tokens,
             **({"error": g.error} if g.error else {})} for g in gens]
