"""Pretraining from the corpus engine's memory-mapped token shards, on the Hugging Face Trainer.

Why the Trainer and not an explicit loop: the same recipe then runs on one CPU process, DDP, DeepSpeed ZeRO-1/2/3
(sharded init under ZeRO-3: the model is built inside ``zero.Init``) and FSDP2 on GPUs, with bf16 and activation
checkpointing, and its checkpoints (model, optimizer shards, scheduler, RNG states, step) resume exactly on any of
them; SFT and DPO run on the same Trainer, so one set of sharding, checkpoint and logging choices serves all three
(:mod:`moss_train.config`). What is ours is the data: :mod:`moss_train.packing` turns the mix into a map-style
dataset of packed blocks, read in mix order (``train_sampling_strategy="sequential"``: the mix stage already
shuffled), each rank taking its own batches of every global step (accelerate's batch sharding), so N ranks see
exactly the blocks one process would at N times the batch, and a resume at step k skips k global batches without
reading them.

Documents never attend to each other: no attention mask, position ids restarting at every document; transformers
derives the documents from them: flash-attention's varlen kernels on a GPU with ``flash-attn`` installed (memory
linear in the block length), a block-sparse mask with ``flex_attention``, a block-diagonal mask with SDPA otherwise
(the CPU path, checked in the tests against each document computed alone).

The model is a Llama of a preset shape (:mod:`moss_train.models`: ``tiny`` .. ``moss-16b``) with the corpus's own
tokenizer, or a model folder to continue from (``init_from``). Loss, learning rate, tokens/s per device and MFU go
to TensorBoard and ``train_summary.json``; the final model and the tokenizer go to ``final/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from loguru import logger
from pydantic import Field

from moss_data.io.tokens import EOD, TokenCorpus
from moss_train.config import (TrainerRecipe, distributed_summary, finish_distributed, last_complete_checkpoint,
                               prepare_distributed, save_final, sharding_report, trainer_arguments)
from moss_train.models import ModelShape, initialize_by_name, resolve_shape
from moss_train.packing import PackedBlocks, collate
from moss_train.throughput import ThroughputCallback, count_parameters


class PretrainRecipe(TrainerRecipe):
    corpus_dir: Path = Field(description="a corpus run's output folder (tokens/, mix/, tokenizer/)")
    init_from: str | None = Field(None, description="a model folder to continue from; default: a new model")
    model: str | ModelShape = Field("tiny", description="a preset (tiny, 1b, 7b, moss-16b) or a shape")
    block_size: int = Field(256, ge=8)
    batch_size: int = Field(8, ge=1, description="blocks per device")
    max_steps: int = Field(20, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(2, ge=0)
    weight_decay: float = 0.1
    save_steps: int = Field(10, ge=0, description="checkpoint every N steps (0: only the final model)")
    attention: Literal["auto", "sdpa", "flash_attention_2", "flex_attention", "eager"] = Field(
        "auto", description="auto: flash-attention 2 on a GPU where flash-attn is installed, SDPA otherwise; "
                            "flex_attention: PyTorch's block-sparse kernels (GPU, no extra package)")


def attention_implementation(recipe: PretrainRecipe) -> str:
    if recipe.attention != "auto":
        return recipe.attention
    import torch
    from transformers.utils import is_flash_attn_2_available

    return "flash_attention_2" if torch.cuda.is_available() and is_flash_attn_2_available() else "sdpa"


def corpus_tokenizer(corpus_dir: Path):
    """The corpus run's tokenizer as a transformers tokenizer (saved with every checkpoint and the final model, so
    the next trainer loads both from one folder)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(TokenCorpus(corpus_dir).tokenizer_path),
                                   eos_token=EOD, pad_token=EOD)


def build_model(recipe: PretrainRecipe, vocab_size: int):
    """A new Llama of the recipe's shape, or the ``init_from`` folder. Under a ZeRO-3 config registered by the
    training arguments, both are built inside ``deepspeed.zero.Init`` (transformers does it), sharded from the
    start."""
    import torch
    from transformers import AutoModelForCausalLM

    attention = attention_implementation(recipe)
    if recipe.init_from:
        model = AutoModelForCausalLM.from_pretrained(recipe.init_from, dtype=torch.float32,
                                                     attn_implementation=attention)
        model.config.use_cache = False  # with a cache transformers would not see packed documents
        return model
    shape = resolve_shape(recipe.model)
    config = shape.llama_config(vocab_size, max(recipe.block_size, shape.max_position_embeddings))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=attention)
    initialize_by_name(model, recipe.seed)
    return model


def build_pretrain_trainer(recipe: PretrainRecipe):
    from transformers import Trainer, TrainingArguments

    arguments = trainer_arguments(recipe) | dict(
        lr_scheduler_type="cosine", warmup_steps=recipe.warmup_steps, weight_decay=recipe.weight_decay,
        max_grad_norm=1.0, train_sampling_strategy="sequential", remove_unused_columns=False,
        include_num_input_tokens_seen="all")  # every block slot is computed: throughput counts them all
    args = TrainingArguments(**arguments)  # before the model: ZeRO-3 builds it sharded
    prepare_distributed(args)
    tokenizer = corpus_tokenizer(recipe.corpus_dir)
    with args.main_process_first(local=False, desc="block index"):  # rank 0 builds it; the others read its cache
        blocks = PackedBlocks(recipe.corpus_dir, recipe.block_size, tokenizer.pad_token_id,
                              cache_dir=recipe.output_dir / "data")
    model = build_model(recipe, len(tokenizer))
    at_load = sharding_report(model)
    throughput = ThroughputCallback(recipe.block_size)
    trainer = Trainer(model=model, args=args, train_dataset=blocks, data_collator=collate, processing_class=tokenizer,
                      callbacks=[throughput])
    trainer.sharding_at_load, trainer.throughput, trainer.blocks = at_load, throughput, blocks
    return trainer


def run_pretrain(recipe: PretrainRecipe, resume: bool = False) -> dict:
    """Train, save ``final/`` and ``train_summary.json``; ``resume`` continues from the last complete checkpoint."""
    trainer = build_pretrain_trainer(recipe)
    checkpoint = last_complete_checkpoint(recipe.output_dir) if resume else None
    if checkpoint:
        logger.info(f"pretrain: resuming from {checkpoint.name}")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    args, steps = trainer.args, trainer.state.global_step
    consumed = steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = {"steps": steps, "blocks": consumed, "block_size": recipe.block_size,
               "packing_efficiency": round(trainer.blocks.real_tokens(consumed) / max(consumed * recipe.block_size, 1),
                                           4),
               "first_loss": losses[0], "last_loss": losses[-1], "losses": losses,
               "parameters": count_parameters(trainer.model)[0], "attention": trainer.model.config._attn_implementation,
               "throughput": trainer.throughput.summary(),
               "distributed": distributed_summary(trainer, trainer.sharding_at_load)}
    save_final(trainer, recipe, summary)
    finish_distributed()
    return summary
