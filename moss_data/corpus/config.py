"""The clean stage's configuration: sources, extraction, language ID, route filters (quality, toxicity, code licence),
PII."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from moss_data.corpus.filters.chinese import ChineseQualityConfig
from moss_data.corpus.filters.code import CodeQualityConfig
from moss_data.corpus.filters.english import EnglishFilters
from moss_data.corpus.filters.learned import LearnedQualityConfig
from moss_data.corpus.filters.licence import LicenceFilterConfig
from moss_data.corpus.filters.toxicity import ToxicityConfig
from moss_data.corpus.pii import PIIConfig
from moss_data.recipe import StrictModel

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
    toxicity: ToxicityConfig = Field(ToxicityConfig(), description="offensive text: English (alt-profanity-check per "
                                     "sentence) and Chinese (word list), after each route's quality filters")
    licence: LicenceFilterConfig = Field(LicenceFilterConfig(), description="code licences (SPDX ids): "
                                         "permissive_only keeps only permissive ones; before the code quality filter")
    learned_quality: dict[Literal["en", "zh"], LearnedQualityConfig] = Field(
        default_factory=dict, description="a fastText classifier per route from `moss-data train-quality` (its "
                                          "model.bin), after the route's heuristic filters; none: off")


class CleanConfig(StrictModel):
    """The clean stage: where documents come from and how they are extracted, routed, filtered and scrubbed. A corpus
    recipe holds these keys at its top level (see :class:`moss_data.chain.recipe.CorpusRecipe`)."""

    sources: list[SourceConfig] = Field(min_length=1)
    language_id: LanguageIDConfig = LanguageIDConfig()
    extraction: ExtractionConfig = ExtractionConfig()
    filters: RouteFilters = RouteFilters()
    pii: PIIConfig = PIIConfig()
    max_doc_bytes: int = Field(5_000_000, description="larger web documents are excluded as too_large")
    max_code_file_bytes: int = Field(1_000_000, description="larger code files are skipped before reading")
    max_replaced_share: float = Field(0.01, ge=0, le=1, description="web pages whose bytes no charset decodes: kept "
                                      "with replacement characters up to this share of the text, skipped beyond")
    keep_exclusions: bool = Field(True, description="write every removed document with its reason")

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]):
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return sources
