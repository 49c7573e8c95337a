"""DPO on the feedback stage's preference pairs, with TRL's DPOTrainer and the MOSS chat template.

The pairs file (:mod:`moss_data.io.pairs`) is lossless: each prompt is the full MOSS context of the reply (earlier
turns with their quality tags, inner thoughts, tool calls, results), so DPO trains from it alone and the model sees
exactly the context it answers at inference: after a tool turn's results the template's generation prompt is
``<|MOSS|>:``, otherwise ``<|Inner Thoughts|>:``.
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger
from pydantic import Field

from moss_data.io.pairs import pairs_path, read_pairs
from moss_train.config import (PolicyRecipe, distributed_summary, finish_distributed, load_policy, save_final,
                               sharding_report, trainer_arguments)


class DPORecipe(PolicyRecipe):
    feedback_dir: Path = Field(description="a feedback stage's output folder (its pairs/ are read)")
    beta: float = Field(0.1, gt=0)
    learning_rate: float = Field(5e-7, gt=0)


def preference_rows(feedback_dir: Path, split: str = "train") -> list[dict]:
    """TRL conversational preference rows, straight from the pairs file."""
    return [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
            for p in read_pairs(feedback_dir, split)]


def build_dpo_trainer(recipe: DPORecipe):
    from trl import DPOConfig, DPOTrainer

    rows = preference_rows(recipe.feedback_dir)
    if not rows:
        raise ValueError(f"no training pairs in {pairs_path(recipe.feedback_dir, 'train')}: run `just feedback` "
                         "(with a judge whose scores differ by min_margin)")
    # The reference is the policy before training, its log-probs computed once before the first step (TRL's
    # precompute_ref_log_probs): no second model in memory (a deep copy would double it, and under ZeRO-3 would copy
    # partitions), and no reload from the base folder, which lacks the embedding rows of MOSS's special tokens.
    args = DPOConfig(**trainer_arguments(recipe), max_length=recipe.max_length, beta=recipe.beta,
                     precompute_ref_log_probs=True)  # before the model
    model, tokenizer = load_policy(recipe, "assistant", args)
    at_load = sharding_report(model)
    logger.info(f"dpo: {len(rows)} pairs from {recipe.feedback_dir}")
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=shared_dataset(rows, recipe, args),
                         processing_class=tokenizer)
    trainer.sharding_at_load = at_load
    return trainer


def shared_dataset(rows: list[dict], recipe: DPORecipe, args):
    """The pairs as a dataset stored in ``output_dir/data/preference_dataset``, where every rank finds it: TRL caches
    the precomputed reference log-probs beside the dataset's files, and an in-memory dataset would put them in a
    temporary folder of rank 0's own, which the other ranks cannot open."""
    import datasets

    from moss_data.io.storage import remove_tree

    folder = recipe.output_dir / "data" / "preference_dataset"
    with args.main_process_first(local=False, desc="pairs dataset"):
        if args.process_index == 0:
            remove_tree(folder)  # a previous run's pairs and cached log-probs
            datasets.Dataset.from_list(rows).save_to_disk(str(folder))
        return datasets.load_from_disk(str(folder))


def run_dpo(recipe: DPORecipe) -> Path:
    trainer = build_dpo_trainer(recipe)
    result = trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    final = save_final(trainer, recipe, {"steps": trainer.state.global_step, "train_loss": result.training_loss,
                                         "losses": [h["loss"] for h in logs],
                                         "rewards_accuracies": [h.get("rewards/accuracies") for h in logs],
                                         "distributed": distributed_summary(trainer, trainer.sharding_at_load)})
    finish_distributed()
    return final
