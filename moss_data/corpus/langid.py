"""Routing web documents by language (lid.176, :mod:`moss_data.text.langid`) as a datatrove pipeline step.

Documents that already carry a ``route`` (code from the repo reader) pass
through untouched: lid.176 calls Python code Spanish, so code is routed by its source, never by LID.
"""

from __future__ import annotations

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from moss_data.text.langid import ROUTES, LanguageIdentifier


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
        self.identifier = LanguageIdentifier(min_score, max_chars)

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
                language, score = self.identifier.classify(doc.text)
                doc.metadata["language"] = language
                doc.metadata["language_score"] = round(score, 4)
                doc.metadata["route"] = self.identifier.route_for(language, score)
            self.stat_update(f"route_{doc.metadata['route']}")
            yield doc
