"""Tokens per second per device and model FLOPs utilisation (MFU), logged with every training log line; peak GPU
memory in the summary.

MFU (PaLM, appendix B): the model FLOPs a step needs over what the devices could do at their peak. Training costs
6 FLOPs per parameter per token (forward 2, backward 4) for every matmul weight (the input embedding is a lookup, not
a matmul; the output head is one), plus attention's 12 x layers x hidden x sequence per token. Activation
checkpointing's recomputation is not model FLOPs: it lowers MFU, as it should. Peak figures are dense bf16 tensor
throughput from the vendors' data sheets; a device not in the table (the CPU) gets tokens/s and no MFU.
"""

from __future__ import annotations

import time

from loguru import logger
from transformers import TrainerCallback

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0,
                    "L4": 121.0, "B200": 2250.0, "A10": 125.0}


def device_peak_flops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    # longest key first: "H100" must not match an "H1000"-like name, "A10" must not catch "A100"
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_TFLOPS[key] * 1e12
    return None


def count_parameters(model) -> tuple[int, int]:
    """(all parameters, input-embedding parameters); ZeRO-3 partitions counted whole."""
    total = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    embedding_size = getattr(embedding, "ds_numel", embedding.numel())
    tied = getattr(model.config, "tie_word_embeddings", False)
    return total, embedding_size if not tied else 0  # tied: the head reuses the matrix as a matmul


def training_flops_per_token(model, sequence_length: int) -> float:
    total, embedding = count_parameters(model)
    config = model.config
    text = getattr(config, "get_text_config", lambda: config)()
    attention = 12 * text.num_hidden_layers * text.hidden_size * sequence_length
    return 6 * (total - embedding) + attention


class ThroughputCallback(TrainerCallback):
    """Adds ``tokens_per_s_per_device`` (and ``mfu`` on a known GPU) to each log entry, measured over the steps since
    the previous log; needs ``include_num_input_tokens_seen`` (the trainers set it)."""

    def __init__(self, sequence_length: int):
        self.sequence_length = sequence_length
        self.flops_per_token: float | None = None
        self.peak = device_peak_flops()
        self.windows: list[dict] = []
        self._mark: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.flops_per_token = training_flops_per_token(model, self.sequence_length)
        self._mark = (time.perf_counter(), state.num_input_tokens_seen)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._mark is None or not state.log_history or "loss" not in state.log_history[-1]:
            return
        now, tokens = time.perf_counter(), state.num_input_tokens_seen
        seconds, new_tokens = now - self._mark[0], tokens - self._mark[1]
        self._mark = (now, tokens)
        if seconds <= 0 or new_tokens <= 0:
            return
        window = {"tokens_per_s_per_device": round(new_tokens / seconds / max(args.world_size, 1), 1)}
        if self.peak and self.flops_per_token:
            window["mfu"] = round(window["tokens_per_s_per_device"] * self.flops_per_token / self.peak, 4)
        state.log_history[-1].update(window)
        self.windows.append(window)
        if state.is_world_process_zero:
            logger.info(f"step {state.global_step}: " + ", ".join(f"{k} {v}" for k, v in window.items()))

    def summary(self) -> dict:
        """Means over the logged windows after the first (which holds start-up: compilation, allocator warm-up), and
        this rank's peak GPU memory."""
        import torch

        steady = self.windows[1:] or self.windows
        out: dict = {"flops_per_token": self.flops_per_token}
        if torch.cuda.is_available():
            out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 2)
        for key in ("tokens_per_s_per_device", "mfu"):
            values = [w[key] for w in steady if key in w]
            if values:
                out[key] = round(sum(values) / len(values), 4)
        return out
