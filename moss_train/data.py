"""Training data from the data engine's shards: conversations (dialogue or feedback output folders) as TRL's
``messages`` rows, and the tokenizer that renders them (MOSS special tokens and chat template)."""

from __future__ import annotations

from pathlib import Path

from moss_data.io.conversations import read_conversations
from moss_data.formats import SPECIAL_TOKENS, Conversation
from moss_train.chat_template import LossMask, moss_chat_template


def load_conversations(folders: list[Path]) -> list[Conversation]:
    """Every kept conversation of the given stage outputs (dialogue or feedback folders), in shard order."""
    return [conv for folder in folders for conv, _, _ in read_conversations(Path(folder))]


def conversation_rows(folders: list[Path]) -> list[dict]:
    """The conversations as ``{"messages": [...], "conversation_id", "category"}``: the messages view built from
    the MOSS record, so thoughts, tool calls, results and quality tags all reach the template."""
    return [{"messages": conv.to_messages(), "conversation_id": conv.conversation_id, "category": conv.category}
            for conv in load_conversations(folders)]


def moss_tokenizer(model_dir: Path, loss_mask: LossMask = "moss"):
    """The base model's tokenizer with MOSS's end tokens as special tokens and the MOSS chat template. Returns
    (tokenizer, number of tokens added): the model's embeddings must grow by that much."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    # extra_special_tokens keeps the base model's own extra special tokens (transformers 5 naming)
    known = set(tokenizer.all_special_tokens)
    added = tokenizer.add_special_tokens({"extra_special_tokens": [t for t in SPECIAL_TOKENS if t not in known]})
    tokenizer.chat_template = moss_chat_template(loss_mask)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, added
