"""The backend interface every generation caller uses: sampling parameters, a generation, the protocol.

Two things every backend does the same way, because the dialogue and tool engines steer small models with them:
- ``SamplingParams.stop``: generation ends at the first stop string, which is cut from the text (OpenAI's rule).
- Prefill: a conversation whose last message is the assistant's is *continued* (the model writes on from that
  text, e.g. ``Calculate("``), not answered with a new message. The returned text is only the continuation.
``complete(prompts, params)`` is plain text completion with no chat template (the MOSS chat loop needs it).
A generation says why it ended (``stop``, ``length`` or ``error``), so callers can quarantine truncated outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
    choices: list[str] | None = Field(None, description="the answer is exactly one of these (each one token), "
                                                      "sampled at the temperature (vLLM's structured_outputs choice)")
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
