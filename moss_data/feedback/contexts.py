"""What the feedback steps judge: every assistant response of the input conversations, with the messages before it."""

from __future__ import annotations

from dataclasses import dataclass

import xxhash

from moss_data.formats import Conversation, response_id


@dataclass
class Context:
    context_id: str  # the response id, <conversation_id>:t<n>
    conversation_id: str
    turn: int
    language: str
    category: str
    prompt: list[dict]  # messages before the response (full MOSS context: thoughts, tool calls, results, tags)
    original: str


def contexts_of(conv: Conversation, language: str) -> list[Context]:
    return [Context(response_id(conv.conversation_id, t), conv.conversation_id, t, language, conv.category,
                    conv.prompt_messages(t), turn.moss) for t, turn in enumerate(conv.turns)]


def stable_hash(text: str) -> int:
    """The same number for the same text in every run: samples, splits and untagged shares are drawn with it."""
    return xxhash.xxh3_64_intdigest(text)
