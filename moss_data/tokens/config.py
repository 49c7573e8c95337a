"""The tokenize and mix stages' recipe sections (``tokenize:`` and ``mix:`` in a corpus recipe)."""

from __future__ import annotations

from pydantic import Field

from moss_data.recipe import StrictModel


class TokenizeConfig(StrictModel):
    enabled: bool = True
    tokenizer_path: str | None = Field(None, description="a local tokenizer.json to use; default: train one here")
    vocab_size: int = Field(16384, ge=300)
    train_chars_per_route: int = Field(20_000_000, description="characters of each route the trainer sees")
    batch_size: int = 256


class MixConfig(StrictModel):
    enabled: bool = True
    ratios: dict[str, float] = Field(
        default_factory=lambda: {"en": 360.0, "zh": 100.0, "code": 220.0},
        description="target token ratio per route (MOSS: 360B en : 100B zh : 220B code)",
    )
    target_tokens: int | None = Field(None, description="default: the largest mix that repeats no route")
    max_repeats: float = Field(4.0, ge=1, description="no route is repeated more than this; the report shows the shortfall")
    seed: int = 0
