"""MOSS's tokenizer recipe: a base byte-level BPE extended with Chinese tokens, new embeddings from their pieces.

MOSS took a code BPE and added Chinese tokens (to 107k) so that Chinese text costs fewer tokens. Here: a byte-level
BPE is trained on the corpus's ``zh`` route; its merges are taken in order and appended to the base tokenizer's
merges when the merged token is made only of bytes of characters U+3000-U+9FFF (CJK ideographs, kana, CJK
punctuation: UTF-8 lead bytes 0xE3-0xE9 and continuation bytes) and both its parts are already in the vocabulary.
Appended merges rank after every base merge and only ever join bytes of those characters, so text without them
(English, code) is tokenized exactly as before. The model's embedding matrix grows by the new tokens; each new row
is the mean of the base embeddings of the token's pieces under the base BPE (its own bytes, tokenized by the base
model), so the old tokens' rows, and the logits of text made of old tokens, do not change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

CJK_LEAD = range(0xE3, 0xEA)  # UTF-8 lead bytes of U+3000-U+9FFF
CONTINUATION = range(0x80, 0xC0)


def _byte_decoder() -> dict[str, int]:
    """Byte-level character -> byte (GPT-2's ``bytes_to_unicode``, the alphabet of ``tokenizers``' ByteLevel)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def only_cjk_bytes(token: str, decoder: dict[str, int]) -> bool:
    """Whether a byte-level token starts with a CJK lead byte and holds only CJK lead and continuation bytes."""
    raw = [decoder.get(ch) for ch in token]
    return (bool(raw) and None not in raw and raw[0] in CJK_LEAD
            and all(b in CJK_LEAD or b in CONTINUATION for b in raw))


def train_chinese_merges(zh_texts: Iterable[str], vocab_size: int) -> list[tuple[str, str]]:
    """The merges, in order, of a byte-level BPE trained on Chinese text (same pre-tokenizer as GPT-2-style BPEs)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(zh_texts, trainer=trainer)
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1))
            for m in json.loads(tok.to_str())["model"]["merges"]]


def extend_tokenizer(base_dir: Path, zh_texts: Iterable[str], max_new_tokens: int, out_dir: Path) -> dict[str, int]:
    """Writes the base tokenizer with up to ``max_new_tokens`` Chinese tokens added to ``out_dir``; returns them (as
    byte-level strings) with their ids, which follow the base vocabulary."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    base = AutoTokenizer.from_pretrained(str(base_dir))
    spec = json.loads(base.backend_tokenizer.to_str())
    model = spec["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"{base_dir}: not a BPE tokenizer ({model.get('type')})")
    vocab = model["vocab"]
    merges = model["merges"]
    as_list = bool(merges) and isinstance(merges[0], list)
    known = {tuple(m) if as_list else tuple(m.split(" ", 1)) for m in merges}
    next_id = max([*vocab.values(), *(t["id"] for t in spec.get("added_tokens", []))]) + 1
    decoder = _byte_decoder()
    added: dict[str, int] = {}
    for a, b in train_chinese_merges(zh_texts, vocab_size=256 + 4 * max_new_tokens):
        if len(added) >= max_new_tokens:
            break
        token = a + b
        if a not in vocab or b not in vocab or (a, b) in known or not only_cjk_bytes(token, decoder):
            continue
        merges.append([a, b] if as_list else f"{a} {b}")
        known.add((a, b))
        if token not in vocab:
            vocab[token] = added[token] = next_id
            next_id += 1
    extended = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                       **base.special_tokens_map)
    extended.chat_template = base.chat_template
    extended.save_pretrained(str(out_dir))  # the fast tokenizer only: the base's slow files would disagree
    return added


def resize_with_piece_means(model, base_tokenizer, new_tokens: dict[str, int], new_size: int) -> None:
    """Grows the model's embeddings (and an untied output layer) to ``new_size``; each new token's row is the mean
    of the rows of its pieces under the base BPE. Old rows are untouched."""
    import torch

    bpe = base_tokenizer.backend_tokenizer.model
    pieces = {new_id: [t.id for t in bpe.tokenize(token)] for token, new_id in new_tokens.items()}
    model.resize_token_embeddings(new_size, mean_resizing=False)
    layers = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight.data_ptr() != layers[0].data_ptr():
        layers.append(output.weight)
    with torch.no_grad():
        for weight in layers:
            for new_id, ids in pieces.items():
                weight[new_id] = weight[ids].mean(dim=0)
