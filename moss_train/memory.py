"""GPU memory per device for training, by ZeRO stage, and a plan (ZeRO stage, micro-batch) for a model on a GPU.

Model states of mixed-precision Adam (DeepSpeed's ZeRO paper, section 3): 2 bytes bf16 weights + 2 bytes bf16
gradients + 12 bytes fp32 master weights, momentum and variance = 16 bytes per parameter, partitioned over the
data-parallel GPUs as each stage does. Activations of one micro-batch with activation checkpointing: one hidden
state per layer in bf16, and one layer's full activations (~34 bytes x sequence x hidden, Korthikanti et al. 2022,
without attention scores: flash-attention keeps none) recomputed at a time, plus the logits in fp32 (the loss's
softmax over the vocabulary is often the largest single buffer).

``python -m moss_train.memory --gpu-gib 80 --gpus 8`` prints the table and the plan for every preset.
"""

from __future__ import annotations

from dataclasses import dataclass

from moss_train.models import PRESETS, ModelShape

GIB = 1024**3
USABLE_SHARE = 0.85  # of a GPU's memory: CUDA context, allocator fragmentation and communication buffers take the rest
MICRO_BATCHES = (32, 16, 8, 4, 2, 1)


def model_state_bytes(params: float, stage: int, gpus: int) -> float:
    weights, grads, optimizer = 2 * params, 2 * params, 12 * params
    if stage == 0:
        return weights + grads + optimizer
    if stage == 1:
        return weights + grads + optimizer / gpus
    if stage == 2:
        return weights + (grads + optimizer) / gpus
    if stage == 3:
        return (weights + grads + optimizer) / gpus
    raise ValueError(f"ZeRO stage is 0-3, got {stage}")


def activation_bytes(shape: ModelShape, micro_batch: int, seq_len: int) -> float:
    per_token_layer_inputs = 2 * shape.hidden_size * shape.num_hidden_layers  # checkpointed hidden states, bf16
    one_layer_full = 34 * shape.hidden_size  # the layer being recomputed
    logits = 4 * 2 * shape.vocab_size  # fp32 logits and their gradient
    return micro_batch * seq_len * (per_token_layer_inputs + one_layer_full + logits)


def estimate_gib(shape: ModelShape, stage: int, gpus: int, micro_batch: int = 1, seq_len: int = 2048) -> float:
    return (model_state_bytes(shape.parameters(), stage, gpus) + activation_bytes(shape, micro_batch, seq_len)) / GIB


@dataclass(frozen=True)
class Plan:
    zero_stage: int
    micro_batch: int
    estimated_gib: float


def plan(shape: ModelShape, gpu_gib: float, gpus: int, seq_len: int = 2048) -> Plan | None:
    """The lowest ZeRO stage (least communication) at which a micro-batch of 1 fits, with the largest micro-batch
    that still fits at that stage; None when even ZeRO-3 with a micro-batch of 1 does not fit (more GPUs, CPU
    offload or tensor/pipeline parallelism needed)."""
    budget = gpu_gib * USABLE_SHARE
    for stage in (1, 2, 3) if gpus > 1 else (0,):
        if estimate_gib(shape, stage, gpus, 1, seq_len) > budget:
            continue
        micro = next(m for m in MICRO_BATCHES if estimate_gib(shape, stage, gpus, m, seq_len) <= budget)
        return Plan(stage, micro, round(estimate_gib(shape, stage, gpus, micro, seq_len), 1))
    return None


def table(gpu_gib: float = 80, gpus: int = 8, seq_len: int = 2048) -> str:
    rows = [f"{gpus} GPUs of {gpu_gib:g} GiB, sequences of {seq_len} tokens",
            "| model | parameters | ZeRO-2 GiB/GPU (micro-batch 1) | ZeRO-3 GiB/GPU (micro-batch 1) | plan |",
            "|---|---|---|---|---|"]
    for name, shape in PRESETS.items():
        p = plan(shape, gpu_gib, gpus, seq_len)
        chosen = f"ZeRO-{p.zero_stage}, micro-batch {p.micro_batch} ({p.estimated_gib} GiB)" if p else "does not fit"
        rows.append(f"| {name} | {shape.parameters() / 1e9:.2f}B | {estimate_gib(shape, 2, gpus, 1, seq_len):.1f} | "
                    f"{estimate_gib(shape, 3, gpus, 1, seq_len):.1f} | {chosen} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu-gib", type=float, default=80)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=2048)
    args = parser.parse_args()
    print(table(args.gpu_gib, args.gpus, args.seq_len))
