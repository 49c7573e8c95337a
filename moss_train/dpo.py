"""DPO on the feedback stage's preference pairs, with TRL's DPOTrainer and the MOSS chat template.

The pairs file (:mod:`moss_data.io.pairs`) is lossless: each prompt is the full MOSS context of the reply (earlier
turns with their quality tags, inner thoughts, tool calls, results), so DPO trains from it alone and the model sees
exactly the context it answers at inference: after a tool turn's results the template's generation prompt is
``<|MOSS|>:``, otherwise ``<|Inner Thoughts|>:``.
"""

from __future__ import annotations

import copy
from pathlib import Path

from loguru import logger
from pydantic import Field

from moss_data.io.pairs import pairs_path, read_pairs
from moss_train.config import TrainerRecipe, load_policy, save_final, trainer_arguments


class DPORecipe(TrainerRecipe):
    feedback_dir: Path = Field(description="a feedback stage's output folder (its pairs/ are read)")
    beta: float = Field(0.1, gt=0)
    learning_rate: float = Field(5e-7, gt=0)


def preference_rows(feedback_dir: Path, split: str = "train") -> list[dict]:
    """TRL conversational preference rows, straight from the pairs file."""
    return [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
            for p in read_pairs(feedback_dir, split)]


def build_dpo_trainer(recipe: DPORecipe):
    import datasets
    from trl import DPOConfig, DPOTrainer

    rows = preference_rows(recipe.feedback_dir)
    if not rows:
        raise ValueError(f"no training pairs in {pairs_path(recipe.feedback_dir, 'train')}: run `just feedback` "
                         "(with a judge whose scores differ by min_margin)")
    model, tokenizer = load_policy(recipe, "assistant")
    # The reference model is an exact copy, passed explicitly: left to TRL it is reloaded from the base folder,
    # without the embedding rows of MOSS's special tokens (and new rows are drawn at random on each resize).
    ref_model = copy.deepcopy(model).eval()
    args = DPOConfig(**trainer_arguments(recipe), beta=recipe.beta)
    logger.info(f"dpo: {len(rows)} pairs from {recipe.feedback_dir}")
    return DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                      processing_class=tokenizer)


def run_dpo(recipe: DPORecipe) -> Path:
    trainer = build_dpo_trainer(recipe)
    result = trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return save_final(trainer, recipe, {"steps": trainer.state.global_step, "train_loss": result.training_loss,
                                        "rewards_accuracies": [h.get("rewards/accuracies") for h in logs]})
