"""DPO on the feedback stage's preference pairs, with TRL's DPOTrainer and the MOSS chat template.

The pairs (``pairs/train.parquet``) name their context (``<conversation_id>:t<turn>``); the full prompt, with
inner thoughts, tool calls, results and earlier quality tags, is rebuilt from the feedback stage's tagged shards
(``Conversation.prompt_messages``), so the model sees exactly the MOSS context it answers at inference: after a
tool turn's results the template's generation prompt is ``<|MOSS|>:``, otherwise ``<|Inner Thoughts|>:``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pyarrow.parquet as pq
from loguru import logger
from pydantic import Field

from moss_data.formats import parse_response_id
from moss_data.recipe import StrictModel
from moss_train.data import load_conversations


class DPORecipe(StrictModel):
    name: str
    feedback_dir: Path = Field(description="a feedback stage's output folder (pairs/ and tagged shards/)")
    output_dir: Path
    base_model: str | None = Field(None, description="model folder (e.g. the SFT output); default SmolLM2-135M")
    beta: float = Field(0.1, gt=0)
    max_steps: int = Field(10, ge=1)
    batch_size: int = 2
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-7
    max_length: int = 1024
    seed: int = 0
    logging_steps: int = 1
    deepspeed: Path | None = None
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])


def preference_rows(feedback_dir: Path, split: str = "train") -> list[dict]:
    """TRL conversational preference rows: full MOSS prompt messages, chosen and rejected replies."""
    conversations = {conv.conversation_id: conv for conv in load_conversations([feedback_dir])}
    rows, missing = [], 0
    for pair in pq.read_table(feedback_dir / "pairs" / f"{split}.parquet").to_pylist():
        conversation_id, turn_index = parse_response_id(pair["context_id"])
        conv = conversations.get(conversation_id)
        if conv is None:
            missing += 1
            continue
        rows.append({"prompt": conv.prompt_messages(turn_index), "chosen": pair["chosen"],
                     "rejected": pair["rejected"]})
    if missing:
        logger.warning(f"dpo: {missing} pairs name conversations not in {feedback_dir}/shards; left out")
    return rows


def build_dpo_trainer(recipe: DPORecipe):
    import datasets
    import torch
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from moss_data.dialogue.models import local_smollm2
    from moss_train.data import moss_tokenizer

    rows = preference_rows(recipe.feedback_dir)
    if not rows:
        raise ValueError(f"no training pairs in {recipe.feedback_dir}/pairs/train.parquet: run `just feedback` "
                         "(with a judge whose scores differ by min_margin)")
    base = Path(recipe.base_model) if recipe.base_model else local_smollm2()
    tokenizer, added = moss_tokenizer(base, "assistant")
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if added:
        model.resize_token_embeddings(len(tokenizer))
    # The reference model is an exact copy, passed explicitly: left to TRL it is reloaded from the base folder,
    # without the embedding rows of MOSS's special tokens (and new rows are drawn at random on each resize).
    ref_model = copy.deepcopy(model).eval()
    cuda = torch.cuda.is_available()
    args = DPOConfig(
        output_dir=str(recipe.output_dir), beta=recipe.beta, max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.batch_size, gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate, max_length=recipe.max_length, seed=recipe.seed,
        logging_steps=recipe.logging_steps, save_strategy="no", bf16=cuda, use_cpu=not cuda,
        gradient_checkpointing=cuda, report_to=recipe.report_to, dataloader_num_workers=0,
        deepspeed=str(recipe.deepspeed) if recipe.deepspeed else None,
    )
    logger.info(f"dpo: {len(rows)} pairs from {recipe.feedback_dir}")
    return DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer)


def run_dpo(recipe: DPORecipe) -> Path:
    import json

    trainer = build_dpo_trainer(recipe)
    result = trainer.train()
    final = recipe.output_dir / "final"
    trainer.save_model(str(final))
    trainer.processing_class.save_pretrained(str(final))
    logs = [h for h in trainer.state.log_history if "loss" in h]
    summary = {"steps": trainer.state.global_step, "train_loss": result.training_loss,
               "rewards_accuracies": [h.get("rewards/accuracies") for h in logs]}
    (recipe.output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return final
