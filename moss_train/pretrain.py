"""Pretraining from the corpus engine's memory-mapped token shards: a short explicit loop.

Data: the corpus run's mix, read only through :meth:`TokenCorpus.mixed_documents` (the mix index: (shard, document)
rows in training order over every token shard of every route, each shard checked against the key the mix recorded;
documents are memory-mapped, nothing is copied). Documents are packed whole into blocks of ``block_size`` tokens in
mix order (a document that does not fit the rest of a block starts the next one; one longer than a block is cut into
block-sized pieces), so packing never mixes a document's tokens with another's context:

- attention is block-diagonal causal (a 4D mask: a token sees only earlier tokens of its own document);
- position ids restart at every document;
- no token is trained to predict the first token of the next document.

The share of non-pad tokens (packing efficiency) is reported. The model is a small Llama built from the recipe
(``model:``) with the corpus's own tokenizer, or a checkpoint folder to continue from (``init_from``).

Checkpoints (``checkpoints/step_<n>``, written to a temporary folder and renamed when complete) hold the model, the
optimizer, the scheduler, the step and the data position (blocks consumed), so ``--resume`` continues exactly: the
test checks that 6 + 6 resumed steps give the same weights as 12 steps in one go. Loss, learning rate and tokens go
to TensorBoard (``tb/``) and ``train_summary.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from loguru import logger
from pydantic import Field

from moss_data.recipe import StrictModel
from moss_data.io.atomic import atomic_folder, atomic_write_text
from moss_data.io.tokens import TokenCorpus
from moss_train.config import final_dir, summary_path


class TinyModel(StrictModel):
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 256


class PretrainRecipe(StrictModel):
    name: str
    corpus_dir: Path = Field(description="a corpus run's output folder (tokens/, mix/, tokenizer/)")
    output_dir: Path
    init_from: str | None = Field(None, description="a model folder to continue from; default: a new model")
    model: TinyModel = TinyModel()
    block_size: int = Field(256, ge=8)
    batch_size: int = Field(8, ge=1)
    max_steps: int = Field(20, ge=1)
    learning_rate: float = 1e-3
    warmup_steps: int = 2
    weight_decay: float = 0.1
    save_steps: int = Field(10, ge=1, description="checkpoint every N steps (and at the end)")
    seed: int = 0
    tensorboard: bool = True


@dataclass
class Block:
    ids: np.ndarray  # int64, block_size, padded with pad_id
    segments: np.ndarray  # 0 = padding, 1..k = the k-th document piece in the block


def document_stream(corpus_dir: Path) -> Iterator[np.ndarray]:
    """Documents in mix order (each already ends with <|endoftext|>), from all shards of the mix; the same order
    every epoch, so a data position (blocks consumed) resumes exactly."""
    return TokenCorpus(corpus_dir).mixed_documents()


def pack(documents: Iterator[np.ndarray], block_size: int, pad_id: int) -> Iterator[Block]:
    ids, segs, count = [], [], 0

    def flush() -> Block:
        nonlocal ids, segs, count
        n = len(ids)
        block = Block(np.array(ids + [pad_id] * (block_size - n), dtype=np.int64),
                      np.array(segs + [0] * (block_size - n), dtype=np.int64))
        ids, segs, count = [], [], 0
        return block

    for doc in documents:
        for start in range(0, len(doc), block_size):  # a document longer than a block: block-sized pieces
            piece = doc[start : start + block_size].tolist()
            if len(ids) + len(piece) > block_size:
                yield flush()
            count += 1
            ids += piece
            segs += [count] * len(piece)
    if ids:
        yield flush()


def collate(blocks: list[Block], pad_id: int):
    """input_ids, labels, position_ids and the block-diagonal causal 4D attention mask of a batch."""
    import torch

    ids = torch.from_numpy(np.stack([b.ids for b in blocks]))
    seg = torch.from_numpy(np.stack([b.segments for b in blocks]))
    length = ids.shape[1]
    starts = torch.ones_like(seg, dtype=torch.bool)
    starts[:, 1:] = seg[:, 1:] != seg[:, :-1]
    index = torch.arange(length).expand_as(seg)
    last_start = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=1).values
    position_ids = index - last_start
    labels = ids.clone()
    labels[(seg == 0) | starts] = -100  # padding, and the first token of each piece (its "previous" is another's)
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
    allowed = causal & (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] > 0)
    allowed |= torch.eye(length, dtype=torch.bool)  # padding rows attend to themselves (no all-masked softmax)
    mask = torch.zeros(ids.shape[0], 1, length, length)
    mask.masked_fill_(~allowed[:, None], torch.finfo(mask.dtype).min)
    return {"input_ids": ids, "labels": labels, "position_ids": position_ids, "attention_mask": mask}


def latest_checkpoint(output_dir: Path) -> Path | None:
    done = [p for p in (output_dir / "checkpoints").glob("step_*") if (p / "state.pt").exists()]
    return max(done, key=lambda p: int(p.name.split("_")[1]), default=None)


def build_model(recipe: PretrainRecipe, vocab_size: int):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if recipe.init_from:
        return AutoModelForCausalLM.from_pretrained(recipe.init_from, dtype=torch.float32)
    m = recipe.model
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=m.hidden_size, num_hidden_layers=m.num_hidden_layers,
                         num_attention_heads=m.num_attention_heads, num_key_value_heads=m.num_attention_heads,
                         intermediate_size=m.intermediate_size, max_position_embeddings=recipe.block_size,
                         tie_word_embeddings=True)
    torch.manual_seed(recipe.seed)
    return LlamaForCausalLM(config)


def run_pretrain(recipe: PretrainRecipe, resume: bool = False) -> dict:
    import torch
    from tokenizers import Tokenizer
    from tqdm import tqdm
    from transformers import get_cosine_schedule_with_warmup

    out = recipe.output_dir
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.from_file(str(TokenCorpus(recipe.corpus_dir).tokenizer_path))
    pad_id = tokenizer.token_to_id("<|endoftext|>")
    model = build_model(recipe, tokenizer.get_vocab_size())
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, recipe.warmup_steps, recipe.max_steps)
    step, consumed, real_tokens, slots, losses = 0, 0, 0, 0, []
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32)
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
        scheduler = get_cosine_schedule_with_warmup(optimizer, recipe.warmup_steps, recipe.max_steps)
        state = torch.load(checkpoint / "state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, consumed, real_tokens, slots, losses = (state[k] for k in ("step", "consumed", "real_tokens", "slots", "losses"))
        torch.set_rng_state(state["torch_rng"])
        logger.info(f"pretrain: resumed from {checkpoint.name} (step {step}, {consumed} blocks consumed)")
    writer = None
    if recipe.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))

    def endless_blocks() -> Iterator[Block]:
        while True:  # epochs over the mix, in the same order each time
            yield from pack(document_stream(recipe.corpus_dir), recipe.block_size, pad_id)

    blocks = endless_blocks()
    for _ in range(consumed):  # the data position: skip what earlier steps trained on
        next(blocks)
    model.train()
    bar = tqdm(total=recipe.max_steps, initial=step, desc="pretrain", unit="step")
    while step < recipe.max_steps:
        batch_blocks = [next(blocks) for _ in range(recipe.batch_size)]
        consumed += len(batch_blocks)
        batch = collate(batch_blocks, pad_id)
        real_tokens += sum(int((b.segments > 0).sum()) for b in batch_blocks)
        slots += batch["input_ids"].numel()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(round(loss.item(), 5))
        if writer:
            writer.add_scalar("train/loss", loss.item(), step)
            writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
            writer.add_scalar("train/tokens", real_tokens, step)
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % recipe.save_steps == 0 or step == recipe.max_steps:
            save_checkpoint(out, model, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                         "step": step, "consumed": consumed, "real_tokens": real_tokens,
                                         "slots": slots, "losses": losses, "torch_rng": torch.get_rng_state()})
    bar.close()
    if writer:
        writer.close()
    summary = {"steps": step, "blocks": consumed, "block_size": recipe.block_size,
               "packing_efficiency": round(real_tokens / max(slots, 1), 4), "first_loss": losses[0],
               "last_loss": losses[-1], "losses": losses,
               "parameters": sum(p.numel() for p in model.parameters())}
    with atomic_folder(final_dir(out)) as tmp:
        model.save_pretrained(str(tmp))
    atomic_write_text(summary_path(out), json.dumps(summary, indent=2))
    return summary


def save_checkpoint(out: Path, model, state: dict) -> Path:
    import torch

    path = out / "checkpoints" / f"step_{state['step']}"
    with atomic_folder(path) as tmp:
        model.save_pretrained(str(tmp))
        torch.save(state, tmp / "state.pt")
    return path
