"""The corpus recipe: one YAML file -> one validated :class:`CorpusRecipe` (see recipes/corpus/*.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from moss_data.corpus.filters.chinese import ChineseQualityConfig
from moss_data.corpus.filters.code import CodeQualityConfig
from moss_data.corpus.filters.english import EnglishFilters
from moss_data.corpus.pii import PIIConfig
from moss_data.dedup.stage import DedupConfig
from moss_data.recipe import StrictModel
from moss_data.tokens.stage import MixConfig, TokenizeConfig

SourceKind = Literal["warc", "jsonl", "parquet", "code"]


class SourceConfig(StrictModel):
    """One input. ``warc`` covers WARC and WET (plain, .gz, .zst); ``code`` is a folder of repositories."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="used in output file names and stats")
    kind: SourceKind
    path: str = Field(description="folder (or fsspec URL) holding the source's files")
    glob: str | None = Field(None, description="only files matching this pattern, relative to path")
    content: Literal["html", "text"] | None = Field(
        None, description="html is run through trafilatura; default: html for warc, text otherwise"
    )
    route: Literal["en", "zh", "code", "other"] | None = Field(
        None, description="route every document of this source here instead of by language ID (e.g. code in parquet)"
    )
    text_key: str = "text"
    id_key: str = "id"
    limit: int = Field(-1, description="documents per task, -1 for all (debugging)")

    @model_validator(mode="after")
    def _default_content(self):
        if self.content is None:
            object.__setattr__(self, "content", "html" if self.kind == "warc" else "text")
        if self.kind == "code" and self.content == "html":
            raise ValueError("a code source cannot have content: html")
        if self.kind == "code" and self.route not in (None, "code"):
            raise ValueError("a code source always routes to code")
        return self


class ExecutorConfig(StrictModel):
    """Which datatrove executor runs the pipelines. ``local`` runs here; ``slurm`` submits sbatch array jobs;
    ``ray`` runs on the Ray cluster that ``ray.init()`` finds (install the ``ray`` extra)."""

    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int = Field(2, ge=1, description="shards of each source's files; a task reads its share of files")
    workers: int = Field(-1, description="tasks run at once (-1: as many as tasks; local and ray)")
    # slurm and ray
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2
    # slurm only
    partition: str | None = None
    time: str = "24:00:00"
    qos: str = "normal"
    venv_path: str | None = None
    sbatch_args: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _slurm_needs_partition(self):
        if self.kind == "slurm" and not self.partition:
            raise ValueError("executor.kind slurm needs executor.partition")
        return self


class LanguageIDConfig(StrictModel):
    min_score: dict[Literal["en", "zh"], float] = Field(default_factory=lambda: {"en": 0.65, "zh": 0.5})
    max_chars: int = 4000


class ExtractionConfig(StrictModel):
    timeout_s: float = Field(5.0, gt=0, description="per document; a slower page is a counted skip")
    favour_precision: bool = True


class RouteFilters(StrictModel):
    en: EnglishFilters = EnglishFilters()
    zh: ChineseQualityConfig = ChineseQualityConfig()
    code: CodeQualityConfig = CodeQualityConfig()


class CorpusRecipe(StrictModel):
    name: str
    output_dir: Path
    sources: list[SourceConfig] = Field(min_length=1)
    executor: ExecutorConfig = ExecutorConfig()
    language_id: LanguageIDConfig = LanguageIDConfig()
    extraction: ExtractionConfig = ExtractionConfig()
    filters: RouteFilters = RouteFilters()
    pii: PIIConfig = PIIConfig()
    max_doc_bytes: int = Field(5_000_000, description="larger web documents are excluded as too_large")
    max_code_file_bytes: int = Field(1_000_000, description="larger code files are skipped before reading")
    keep_exclusions: bool = Field(True, description="write every removed document with its reason")
    dedup: DedupConfig = DedupConfig()
    tokenize: TokenizeConfig = TokenizeConfig()
    mix: MixConfig = MixConfig()

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]):
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return sources
