"""GPU memory per device for training, by ZeRO stage: the model states of mixed-precision Adam (DeepSpeed's ZeRO
paper, section 3: 2 bytes bf16 weights + 2 bytes bf16 gradients + 12 bytes fp32 master weights, momentum and
variance = 16 bytes per parameter), partitioned over the data-parallel GPUs as each stage does, plus activations of
one micro-batch with activation checkpointing (one hidden state per layer in bf16, and one layer's full
activations, ~34 bytes x sequence x hidden, recomputed at a time)."""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class ModelShape:
    name: str
    params: float
    layers: int
    hidden: int


# 16B is MOSS's base (34 layers, hidden 6144); 1B and 7B are common Llama-style shapes.
SHAPES = (ModelShape("1B", 1.1e9, 22, 2048), ModelShape("7B", 6.7e9, 32, 4096), ModelShape("16B", 16.0e9, 34, 6144))


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
    per_token_layer_inputs = 2 * shape.hidden * shape.layers  # checkpointed hidden states, bf16
    one_layer_full = 34 * shape.hidden  # recomputed layer (Korthikanti et al. 2022, without attention scores)
    return micro_batch * seq_len * (per_token_layer_inputs + one_layer_full)


def estimate_gib(shape: ModelShape, stage: int, gpus: int, micro_batch: int = 1, seq_len: int = 2048) -> float:
    return (model_state_bytes(shape.params, stage, gpus) + activation_bytes(shape, micro_batch, seq_len)) / GIB


def table(gpus: int = 8, micro_batch: int = 1, seq_len: int = 2048) -> str:
    rows = ["| model | ZeRO-2 GiB/GPU | ZeRO-3 GiB/GPU |", "|---|---|---|"]
    for s in SHAPES:
        rows.append(f"| {s.name} | {estimate_gib(s, 2, gpus, micro_batch, seq_len):.1f} | "
                    f"{estimate_gib(s, 3, gpus, micro_batch, seq_len):.1f} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(table())
