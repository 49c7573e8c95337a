"""The OpenAI-compatible wire format, written once: a request body from messages (or a prompt) and
:class:`SamplingParams`, a :class:`Generation` from a response, and the way back (a body to SamplingParams) for the
in-process server. The HTTP backend, the rollout client and the servers all speak through these functions, so a
sampling setting means the same on every path.

- A conversation ending in an assistant message is *continued* (``continue_final_message``, vLLM's and SGLang's
  extension); ``repetition_penalty`` is vLLM's extension too; structured output is ``response_format`` with a JSON
  schema.
- A plain completion (no chat template) is a body with ``prompt``; it goes to ``/v1/completions``.
"""

from __future__ import annotations

from moss_data.llm.base import Generation, SamplingParams, cut_at_stop, is_prefilled


def chat_body(messages: list[dict], params: SamplingParams, seed: int | None = None) -> dict:
    body = {"messages": messages}
    if is_prefilled(messages):
        body |= {"continue_final_message": True, "add_generation_prompt": False}
    return body | sampling_fields(params, params.seed if seed is None else seed)


def completion_body(prompt: str, params: SamplingParams, seed: int | None = None) -> dict:
    return {"prompt": prompt} | sampling_fields(params, params.seed if seed is None else seed)


def route(body: dict) -> str:
    return "/v1/completions" if "prompt" in body else "/v1/chat/completions"


def sampling_fields(params: SamplingParams, seed: int) -> dict:
    body = {"max_tokens": params.max_new_tokens, "temperature": params.temperature, "top_p": params.top_p,
            "seed": seed}
    if params.stop:
        body["stop"] = params.stop
    if params.json_schema is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "answer", "schema": params.json_schema, "strict": True}}
    if params.choices:  # vLLM's extension (and the in-process server's)
        body["structured_outputs"] = {"choice": params.choices}
    if params.repetition_penalty != 1.0:  # not in OpenAI's API; vLLM's server accepts it
        body["repetition_penalty"] = params.repetition_penalty
    return body


def params_of(body: dict) -> SamplingParams:
    """The sampling parameters a request body asks for (the in-process server's side of the wire)."""
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
    return SamplingParams(max_new_tokens=body.get("max_tokens") or 256, temperature=body.get("temperature", 1.0),
                          top_p=body.get("top_p", 1.0), repetition_penalty=body.get("repetition_penalty", 1.0),
                          stop=body.get("stop") or [], json_schema=schema, seed=body.get("seed") or 0,
                          choices=(body.get("structured_outputs") or {}).get("choice"))


def response(generation: Generation) -> dict:
    """A chat-completion response (the in-process server's answer, and completions normalised to it)."""
    return {"choices": [{"message": {"role": "assistant", "content": generation.text},
                         "finish_reason": generation.finish_reason}],
            "usage": {"prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens,
                      "total_tokens": generation.prompt_tokens + generation.completion_tokens}}


def as_chat_response(data: dict) -> dict:
    """A ``/v1/completions`` response reshaped like a chat one (``text`` -> ``message.content``), so one parser
    (datatrove's runner reads ``message``) serves both routes."""
    for choice in data.get("choices", []):
        if "message" not in choice:
            choice["message"] = {"role": "assistant", "content": choice.pop("text", "") or ""}
    return data


def generation_of(text: str | None, finish_reason: str | None, usage: dict | None,
                  params: SamplingParams) -> Generation:
    # Servers differ on whether a matched stop string is returned; cut it here so every backend agrees.
    text, _ = cut_at_stop(text or "", params.stop)
    usage = usage or {}
    return Generation(text=text, finish_reason=finish_reason or "stop", prompt_tokens=usage.get("prompt_tokens", 0),
                      completion_tokens=usage.get("completion_tokens", 0))


def parse(data: dict, params: SamplingParams) -> Generation:
    choice = as_chat_response(data)["choices"][0]
    return generation_of(choice["message"].get("content"), choice.get("finish_reason"), data.get("usage"), params)
