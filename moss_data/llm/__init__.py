"""Kernel: generation backends, the rollout runner, the local model cache and output checks.

Dialogue and feedback generation run as rollouts on datatrove's inference runner (:mod:`moss_data.llm.rollouts`),
each role (assistant, user simulator, judge) on a backend of kind ``transformers`` (a local model folder, in
process), ``http`` (any OpenAI-compatible endpoint) or ``vllm`` (a vLLM server each task launches). Evaluation and
chat take a synchronous :class:`Backend` from ``build_backend(BackendConfig)`` (``transformers`` or ``http``).
Backend modules import their heavy libraries (torch, httpx, vllm) only when a backend is built.
"""

from moss_data.llm.base import Backend, BackendError, Generation, SamplingParams, cut_at_stop, is_prefilled
from moss_data.llm.checks import check_output
from moss_data.llm.config import BackendConfig, build_backend

__all__ = ["Backend", "BackendConfig", "BackendError", "Generation", "SamplingParams", "build_backend",
           "check_output", "cut_at_stop", "is_prefilled"]
