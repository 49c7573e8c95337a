"""The learned quality filter: a fastText model from ``moss-data train-quality`` (see
:mod:`moss_data.corpus.learned_quality`) keeps a document when its probability of ``keep`` reaches the recipe's
threshold [learned_quality]. The model file is loaded once per task; the probability goes into the document's
metadata (``quality_score``), kept or not, so a later run can re-threshold from the excluded output."""

from __future__ import annotations

from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from pydantic import Field

from moss_data.recipe import StrictModel


class LearnedQualityConfig(StrictModel):
    model: Path | None = Field(None, description="model.bin of a train-quality run; none: the filter is off")
    threshold: float = Field(0.5, ge=0, le=1, description="probability of keep a document needs")
    max_tokens: int = Field(1000, ge=16, description="as in training (train-quality's fasttext.max_tokens)")


class LearnedQualityFilter(BaseFilter):
    name = "🎓 Learned quality"

    def __init__(self, config: LearnedQualityConfig, exclusion_writer=None):
        super().__init__(exclusion_writer)
        if config.model is None or not Path(config.model).is_file():
            raise FileNotFoundError(f"learned quality model {config.model} not found: run `moss-data train-quality` "
                                    "and point the route's learned_quality.model at its model.bin")
        self.config = config
        self._model = None

    def _keep_probability(self, text: str) -> float:
        from moss_data.corpus.learned_quality import model_text

        if self._model is None:
            import fasttext

            self._model = fasttext.load_model(str(self.config.model))
        labels, probs = self._model.predict(model_text(text, self.config.max_tokens), k=2)
        return float(dict(zip(labels, probs)).get("__label__keep", 0.0))

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        p = self._keep_probability(doc.text)
        doc.metadata["quality_score"] = round(p, 4)
        self.stat_update("learned_quality_scored")
        return True if p >= self.config.threshold else (False, "learned_quality")
