"""Document size guard: huge documents are excluded before extraction or filtering spend time on them."""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter


class DocumentSizeFilter(BaseFilter):
    """Drops documents over ``max_bytes`` of UTF-8 (reason ``too_large``) or with no visible text (``empty``)."""

    name = "📏 Size guard"

    def __init__(self, max_bytes: int = 5_000_000, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.max_bytes = max_bytes

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        # Characters bound bytes from below (and x4 from above), so most documents skip the encode.
        if len(text) > self.max_bytes or (len(text) * 4 > self.max_bytes and len(text.encode("utf-8")) > self.max_bytes):
            doc.metadata["original_bytes"] = len(text.encode("utf-8"))
            return False, "too_large"
        if not text.strip():
            return False, "empty"
        return True
