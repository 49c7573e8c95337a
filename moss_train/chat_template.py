"""The MOSS serialization as a tokenizer chat template, with ``{% generation %}`` markers for the loss.

Rendering the ``messages`` view (``moss_data.formats.Conversation.to_messages``) with this template gives exactly
the serialized MOSS text (meta instruction, then per turn ``<|Human|>: ...<eoh>`` ... ``<|MOSS|>: ...<eom>``; a test
checks it against ``Conversation`` for every shape). The spans inside ``{% generation %}`` blocks are the ones
``return_assistant_tokens_mask`` marks, which TRL's ``assistant_only_loss`` trains on. Two loss masks:

- ``moss`` (MOSS's own choice): everything except the meta instruction, the quality tag and the inside of tool
  results: human turns, inner thoughts, commands, the Results markers and the replies.
- ``assistant``: what the model writes at inference only: inner thoughts and commands (pass 1, after
  ``<|Inner Thoughts|>:``) and the reply (pass 2, after ``<|MOSS|>:`` and the tag).

The quality tag (``<quality:N> `` before a reply) is rendered outside the trained span in both: the model is
conditioned on it and never learns to write it.
"""

from __future__ import annotations

from typing import Literal

LossMask = Literal["moss", "assistant"]

# The template is one line with no whitespace between tags, so it needs no trimming marks ("{%-" would eat the
# newlines and spaces that end MOSS segments).
_COMMANDS = (
    "{% for call in message.tool_calls %}"
    "{{ ', ' if not loop.first else '' }}"
    # after a round trip through Arrow (datasets) every tool's argument key is present, the others' as None
    "{% set arg = (call.function.arguments.values() | reject('none') | list)[0] %}"
    "{{ call.function.name }}(\"{{ arg | replace('\\\\', '\\\\\\\\') | replace('\"', '\\\\\"') }}\")"
    "{% endfor %}"
)


def moss_chat_template(loss_mask: LossMask = "moss") -> str:
    """The Jinja chat template for one loss mask."""
    human_on = "{% generation %}" if loss_mask == "moss" else ""
    human_off = "{% endgeneration %}" if loss_mask == "moss" else ""
    results_on = "{% generation %}" if loss_mask == "moss" else ""
    results_off = "{% endgeneration %}" if loss_mask == "moss" else ""
    tag = "{% if message.quality is defined and message.quality is not none %} <quality:{{ message.quality }}>{% endif %}"
    thoughts = "{{ message.thinking if message.thinking is defined and message.thinking is not none else 'None' }}"
    return (
        "{% for message in messages %}"
        "{% if message.role == 'system' %}{{ message.content }}"
        "{% elif message.role == 'user' %}"
        f"{human_on}<|Human|>: {{{{ message.content }}}}<eoh>\n{human_off}"
        "{% elif message.role == 'tool' %}"
        # transformers renders with trim_blocks: a newline right after a block tag would vanish, so write it
        f"{results_on}<|Results|>:{results_off}{{{{ '\\n' + message.content }}}}{results_on}<eor>\n{results_off}"
        "{% elif message.role == 'assistant' and message.tool_calls is defined and message.tool_calls %}"
        "<|Inner Thoughts|>:{% generation %} " + thoughts + "<eot>\n<|Commands|>: " + _COMMANDS
        + "<eoc>\n{% endgeneration %}"
        "{% elif message.role == 'assistant' %}"
        "{% if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}"
        "<|Inner Thoughts|>:{% generation %} " + thoughts + "<eot>\n<|Commands|>: None<eoc>\n{% endgeneration %}"
        f"{results_on}<|Results|>: None<eor>\n{results_off}"
        "{% endif %}"
        "<|MOSS|>:" + tag + "{% generation %} {{ message.content }}<eom>\n{% endgeneration %}"
        "{% endif %}"
        "{% endfor %}"
        # the next thing the model writes: after tool results the reply, otherwise (pass 1) the inner thoughts
        "{% if add_generation_prompt %}"
        "{% if messages[-1].role == 'tool' %}<|MOSS|>:{% else %}<|Inner Thoughts|>:{% endif %}"
        "{% endif %}"
    )


def trained_spans(tokenizer, ids: list[int], mask: list[int]) -> list[str]:
    """The text of each stretch of tokens that carries loss (mask 1, or a label that is not -100), in order: what
    to read when checking a loss mask."""
    spans, current = [], []
    for token, on in zip(ids, mask):
        if on:
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    if current:
        spans.append(tokenizer.decode(current))
    return spans
