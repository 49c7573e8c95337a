"""Kernel: generation backends behind one small interface, the local model cache and output checks.

Dialogue, tool traces, feedback, evaluation and chat take a :class:`Backend`; none of them owns one.
``build_backend(BackendConfig)`` makes one of: ``transformers`` (a local model folder), ``http`` (any
OpenAI-compatible endpoint), ``vllm`` (vLLM's engine, the ``gpu`` extra). Backend modules import their heavy
libraries (torch, httpx, vllm) only when a backend is built.
"""

from moss_data.llm.base import Backend, BackendError, Generation, SamplingParams, cut_at_stop, is_prefilled
from moss_data.llm.checks import check_output
from moss_data.llm.config import BackendConfig, build_backend

__all__ = ["Backend", "BackendConfig", "BackendError", "Generation", "SamplingParams", "build_backend",
           "check_output", "cut_at_stop", "is_prefilled"]
