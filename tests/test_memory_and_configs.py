"""Memory estimates against the ZeRO paper's own figure, and the shipped DeepSpeed/accelerate configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moss_train.memory import USABLE_SHARE, estimate_gib, model_state_bytes, plan
from moss_train.models import PRESETS

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("stage, gb", [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_model_states_match_the_zero_paper(stage, gb):
    # ZeRO (Rajbhandari et al. 2020), Figure 1: a 7.5B model on 64 GPUs with mixed-precision Adam
    assert model_state_bytes(7.5e9, stage, 64) / 1e9 == pytest.approx(gb, abs=0.05)


def test_estimates_fall_with_more_gpus_and_grow_with_sequence():
    big = PRESETS["moss-16b"]
    assert estimate_gib(big, 3, 16) < estimate_gib(big, 3, 8) < estimate_gib(big, 2, 8)
    assert estimate_gib(big, 3, 8, seq_len=4096) > estimate_gib(big, 3, 8, seq_len=2048)


@pytest.mark.parametrize("preset, published", [("1b", 1.10e9), ("7b", 6.74e9), ("moss-16b", 16.0e9)])
def test_presets_have_their_published_sizes(preset, published):
    # TinyLlama-1.1B, Llama-2-7B (6,738,415,616 with its 32k vocabulary), MOSS's 16B base (CodeGen-16B: 16.0B)
    assert PRESETS[preset].parameters() == pytest.approx(published, rel=0.05)


def test_the_plan_takes_the_least_sharding_that_fits_and_the_largest_micro_batch():
    big = PRESETS["moss-16b"]
    on_40 = plan(big, 40, 8)
    assert on_40.zero_stage == 3  # ZeRO-2 needs ~61 GiB of model states and activations a GPU
    assert estimate_gib(big, 2, 8) > 40 * USABLE_SHARE >= on_40.estimated_gib
    on_80 = plan(big, 80, 8)
    assert on_80.zero_stage == 2 and on_80.micro_batch >= 1
    if on_80.micro_batch < 32:  # the next micro-batch would not fit
        assert estimate_gib(big, 2, 8, on_80.micro_batch * 2) > 80 * USABLE_SHARE
    assert plan(big, 141, 1) is None  # one GPU cannot hold 16B with Adam: more GPUs, offload or model parallelism
    assert plan(PRESETS["7b"], 141, 1).zero_stage == 0


def test_shipped_deepspeed_configs():
    for stage in (1, 2, 3):
        cfg = json.loads((REPO / f"recipes/train/deepspeed/zero{stage}.json").read_text())
        assert cfg["zero_optimization"]["stage"] == stage and cfg["train_micro_batch_size_per_gpu"] == "auto"


def test_fsdp_on_cpu_is_refused_not_quietly_ddp(tmp_path):
    """accelerate enables FSDP only on GPU setups: on CPU ranks the Trainer would train plain DDP and say nothing."""
    import torch

    from moss_train.config import trainer_arguments
    from moss_train.pretrain import PretrainRecipe

    if torch.cuda.is_available():
        pytest.skip("a GPU machine: FSDP2 is enabled there (just gpu-check runs it)")
    recipe = PretrainRecipe(name="f", corpus_dir=tmp_path, output_dir=tmp_path, fsdp=True)
    with pytest.raises(ValueError, match="quietly train plain DDP"):
        trainer_arguments(recipe)
    with pytest.raises(ValueError, match="choose one"):
        PretrainRecipe(name="f", corpus_dir=tmp_path, output_dir=tmp_path, fsdp=True,
                       deepspeed=REPO / "recipes/train/deepspeed/zero3.json")
    arguments = trainer_arguments(recipe.model_copy(update={"fsdp": False}))
    assert arguments["use_cpu"] and not arguments["bf16"] and "fsdp" not in arguments
