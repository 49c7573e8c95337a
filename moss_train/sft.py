"""Supervised fine-tuning on conversation shards with TRL's SFTTrainer and the MOSS chat template.

The loss mask is a recipe option (``loss_mask``): ``moss`` trains everything except the meta instruction, the
quality tag and the inside of tool results (MOSS's choice); ``assistant`` only what the model writes at inference.
Both come from the template's ``{% generation %}`` blocks through TRL's ``assistant_only_loss``. Training on the
feedback stage's tagged shards is the preference-aware (quality-tag conditioned) SFT: the tag is in the context,
never in the loss, and inference asks for the best tag.
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger
from pydantic import Field

from moss_train.chat_template import LossMask
from moss_train.config import (PolicyRecipe, distributed_summary, finish_distributed, last_complete_checkpoint,
                               load_policy, save_final, sharding_report, trainer_arguments)


class SFTRecipe(PolicyRecipe):
    data: list[Path] = Field(description="dialogue or feedback output folders (their shards are read)")
    loss_mask: LossMask = "moss"
    packing: bool = False


def build_sft_trainer(recipe: SFTRecipe):
    import datasets
    from trl import SFTConfig, SFTTrainer

    from moss_train.data import conversation_rows

    args = SFTConfig(**trainer_arguments(recipe), max_length=recipe.max_length, packing=recipe.packing,
                     assistant_only_loss=True)  # before the model
    model, tokenizer = load_policy(recipe, recipe.loss_mask, args)
    at_load = sharding_report(model)
    rows = conversation_rows(recipe.data)
    logger.info(f"sft: {len(rows)} conversations from {', '.join(map(str, recipe.data))}; loss mask {recipe.loss_mask}")
    dataset = datasets.Dataset.from_list([{"messages": r["messages"]} for r in rows])
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.sharding_at_load = at_load
    return trainer


def run_sft(recipe: SFTRecipe, resume: bool = False) -> Path:
    """Train, save the model and tokenizer to ``output_dir/final`` and a ``train_summary.json`` beside it."""
    trainer = build_sft_trainer(recipe)
    checkpoint = last_complete_checkpoint(recipe.output_dir) if resume else None
    if resume and checkpoint is None:
        raise FileNotFoundError(f"--resume: no complete checkpoint (checkpoint-N with trainer_state.json) in "
                                f"{recipe.output_dir}")
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final = save_final(trainer, recipe, {
        "steps": trainer.state.global_step, "train_loss": result.training_loss,
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h], "loss_mask": recipe.loss_mask,
        "distributed": distributed_summary(trainer, trainer.sharding_at_load)})
    finish_distributed()
    return final
