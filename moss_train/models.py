"""Model shapes to pretrain, by name: a tiny one for the CPU, common 1B and 7B Llama shapes, and a 16B shaped like
MOSS's base.

MOSS-base (moss-moon-003-base) is a CodeGen-16B: 34 layers, hidden 6144, 24 heads, a 2,048-token context and a
107k vocabulary (CodeGen's BPE extended with Chinese tokens). The ``moss-16b`` preset keeps that shape in Llama blocks
(RoPE, RMSNorm, SwiGLU), the block transformers, DeepSpeed, FSDP and flash-attention all serve best; its MLP width is
the one whose parameters match CodeGen's 4 x hidden GELU MLP (3 x 6144 x w = 2 x 6144 x 24576 -> w = 16384).
The vocabulary comes from the tokenizer the run trains with (``vocab_size`` is the presets' figure for memory
planning before a tokenizer exists).
"""

from __future__ import annotations

from pydantic import Field

from moss_data.recipe import StrictModel


class ModelShape(StrictModel):
    hidden_size: int = Field(64, ge=8)
    num_hidden_layers: int = Field(2, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int | None = Field(None, description="grouped-query attention; default: one per head")
    intermediate_size: int = Field(256, ge=8)
    max_position_embeddings: int = Field(2048, ge=8)
    vocab_size: int = Field(32_000, description="for memory planning; training uses the tokenizer's")
    tie_word_embeddings: bool = False

    def parameters(self, vocab_size: int | None = None) -> int:
        """Parameters of the Llama block stack of this shape (what memory and FLOPs scale with)."""
        h, layers, inter = self.hidden_size, self.num_hidden_layers, self.intermediate_size
        kv = (self.num_key_value_heads or self.num_attention_heads) * (h // self.num_attention_heads)
        per_layer = h * h * 2 + 2 * h * kv + 3 * h * inter + 2 * h  # q, o; k, v; gate, up, down; two norms
        vocab = vocab_size or self.vocab_size
        embeddings = vocab * h * (1 if self.tie_word_embeddings else 2)
        return layers * per_layer + embeddings + h

    def llama_config(self, vocab_size: int, max_position_embeddings: int | None = None):
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=vocab_size, hidden_size=self.hidden_size,
                           num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                           num_key_value_heads=self.num_key_value_heads or self.num_attention_heads,
                           intermediate_size=self.intermediate_size,
                           max_position_embeddings=max_position_embeddings or self.max_position_embeddings,
                           tie_word_embeddings=self.tie_word_embeddings,
                           use_cache=False)  # training: with a cache, transformers would not see packed documents


PRESETS: dict[str, ModelShape] = {
    "tiny": ModelShape(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                       max_position_embeddings=2048, vocab_size=8_000, tie_word_embeddings=True),
    "1b": ModelShape(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                     intermediate_size=5632, vocab_size=32_000),  # TinyLlama-1.1B's shape
    "7b": ModelShape(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, intermediate_size=11008,
                     max_position_embeddings=4096, vocab_size=32_000),  # Llama-2-7B's shape
    "moss-16b": ModelShape(hidden_size=6144, num_hidden_layers=34, num_attention_heads=24, intermediate_size=16384,
                           max_position_embeddings=2048, vocab_size=106_072),  # MOSS's base (see above)
}


def initialize_by_name(model, seed: int) -> None:
    """Llama's initialisation (normal(0, initializer_range) matrices, unit norm weights), each parameter drawn from a
    generator seeded by the run's seed and the parameter's name: the same initial model on one process or any number
    of ranks, sharded or not. (Drawn in construction order from one global generator, as transformers does, a model
    built inside ZeRO-3's ``zero.Init`` starts from other weights than the same model built whole.) Under ZeRO-3 each
    parameter is gathered in turn, drawn on rank 0 and re-partitioned."""
    import zlib
    from contextlib import nullcontext

    import torch
    from transformers.integrations import is_deepspeed_zero3_enabled

    zero3 = is_deepspeed_zero3_enabled()
    if zero3:
        import deepspeed
    std = model.config.initializer_range
    for name, param in model.named_parameters():
        gathered = deepspeed.zero.GatheredParameters([param], modifier_rank=0) if zero3 else nullcontext()
        with gathered, torch.no_grad():
            if zero3 and torch.distributed.get_rank() != 0:
                continue
            if param.ndim == 1:
                param.fill_(1.0)
            else:
                generator = torch.Generator(device=param.device)
                generator.manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
                param.normal_(0.0, std, generator=generator)


def resolve_shape(model: str | ModelShape) -> ModelShape:
    if isinstance(model, ModelShape):
        return model
    if model not in PRESETS:
        raise ValueError(f"unknown model preset {model!r}: one of {sorted(PRESETS)}, or a shape "
                         "(hidden_size, num_hidden_layers, ...)")
    return PRESETS[model]
