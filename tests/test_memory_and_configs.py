"""Memory estimates against the ZeRO paper's own figure, and the shipped DeepSpeed/accelerate configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from moss_train.memory import SHAPES, estimate_gib, model_state_bytes

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("stage, gb", [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_model_states_match_the_zero_paper(stage, gb):
    # ZeRO (Rajbhandari et al. 2020), Figure 1: a 7.5B model on 64 GPUs with mixed-precision Adam
    assert model_state_bytes(7.5e9, stage, 64) / 1e9 == pytest.approx(gb, abs=0.05)


def test_estimates_fall_with_more_gpus_and_grow_with_sequence():
    big = SHAPES[-1]
    assert estimate_gib(big, 3, 16) < estimate_gib(big, 3, 8) < estimate_gib(big, 2, 8)
    assert estimate_gib(big, 3, 8, seq_len=4096) > estimate_gib(big, 3, 8, seq_len=2048)


def test_shipped_deepspeed_and_accelerate_configs():
    for stage in (2, 3):
        cfg = json.loads((REPO / f"recipes/train/deepspeed/zero{stage}.json").read_text())
        assert cfg["zero_optimization"]["stage"] == stage and cfg["train_micro_batch_size_per_gpu"] == "auto"
        acc = yaml.safe_load((REPO / f"recipes/train/accelerate/zero{stage}_1node.yaml").read_text())
        assert acc["distributed_type"] == "DEEPSPEED"
        assert (REPO / acc["deepspeed_config"]["deepspeed_config_file"]).exists()
