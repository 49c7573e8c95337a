"""A byte-level BPE tokenizer built locally from the corpus (HF `tokenizers`), or a given tokenizer.json.

Nothing comes from a hub. The special tokens are the end-of-document token and MOSS's end-of-segment tokens
(``<eoh> <eot> <eoc> <eor> <eom>``), so the same file serves pretraining and the chat format later. Training is
deterministic: the same texts in the same order give the same bytes, whatever the hash seed or thread count (tested).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from moss_data.io.atomic import atomic_write
from moss_data.io.storage import as_path
from moss_data.io.tokens import EOD

SPECIAL_TOKENS = [EOD, "<eoh>", "<eot>", "<eoc>", "<eor>", "<eom>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int, out: Path) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    atomic_write(out, tok.to_str().encode("utf-8"))  # a kill mid-save must not leave a broken tokenizer behind
    return tok


def load_tokenizer(path: Path) -> Tokenizer:
    path = as_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer {path} not found (set tokenize.tokenizer_path or let the stage train one)")
    tok = Tokenizer.from_str(path.read_text(encoding="utf-8"))
    if tok.token_to_id(EOD) is None:
        raise ValueError(f"tokenizer {path} has no {EOD} token: add it, the token shards need a document separator")
    return tok
