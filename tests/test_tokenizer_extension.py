"""MOSS's tokenizer recipe on real text: SmolLM2's byte-level BPE extended with Chinese tokens learned from the
sample corpus's zh route. Chinese costs fewer tokens per character on held-out documents, English and code are
tokenized exactly as before, and the model grown this way computes the same logits for text of old tokens."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
import torch

from moss_data.io.documents import iter_documents
from moss_train.tokenizer_extension import extend_tokenizer, resize_with_piece_means

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "data" / "models" / "smollm2-135m-instruct"
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def extended(sample_run, tmp_path_factory):
    from transformers import AutoTokenizer

    zh = [d["text"] for d in iter_documents(Path(sample_run.output_dir) / "clean" / "zh")]
    train, held_out = zh[: len(zh) * 4 // 5], zh[len(zh) * 4 // 5 :]
    out = tmp_path_factory.mktemp("extended_tokenizer")
    added = extend_tokenizer(MODEL, train, max_new_tokens=2000, out_dir=out)
    return AutoTokenizer.from_pretrained(str(MODEL)), AutoTokenizer.from_pretrained(str(out)), added, held_out


def test_chinese_costs_fewer_tokens_per_character(extended):
    base, new, added, held_out = extended
    assert len(added) >= 1000 and len(new) == len(base) + len(added)
    chars = sum(len(t) for t in held_out)
    before = sum(len(base(t, add_special_tokens=False)["input_ids"]) for t in held_out) / chars
    after = sum(len(new(t, add_special_tokens=False)["input_ids"]) for t in held_out) / chars
    assert after < 0.8 * before, (before, after)
    text = held_out[0][:500]
    assert new.decode(new(text, add_special_tokens=False)["input_ids"]) == text  # still lossless


def test_english_and_code_are_tokenized_exactly_as_before(extended, sample_run):
    base, new, _, _ = extended
    english = [d["text"] for d in iter_documents(Path(sample_run.output_dir) / "clean" / "en")][:50]
    code = [p.read_text() for p in sorted((STDLIB / "json").glob("*.py"))]
    for text in english + code:
        assert new(text)["input_ids"] == base(text)["input_ids"]


def test_a_model_grown_this_way_keeps_the_old_logits(extended):
    from transformers import AutoModelForCausalLM

    base, new, added, held_out = extended
    original = AutoModelForCausalLM.from_pretrained(str(MODEL), dtype=torch.float32).eval()
    grown = AutoModelForCausalLM.from_pretrained(str(MODEL), dtype=torch.float32).eval()
    resize_with_piece_means(grown, base, added, len(new))
    ids = torch.tensor([base("The quick brown fox jumps over the lazy dog. 中文")["input_ids"]])
    with torch.no_grad():
        old, now = original(ids).logits, grown(ids).logits
    assert now.shape[-1] == len(new)
    # unchanged up to float rounding (a wider output matmul sums in another blocking)
    assert torch.allclose(now[..., : old.shape[-1]], old, atol=1e-4, rtol=0)
    # a new token's embedding is the mean of its pieces' embeddings
    token, new_id = next(iter(added.items()))
    pieces = [t.id for t in base.backend_tokenizer.model.tokenize(token)]
    emb = grown.get_input_embeddings().weight
    assert torch.allclose(emb[new_id], emb[pieces].mean(dim=0))
