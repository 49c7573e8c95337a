"""Route gates: run a datatrove filter only on the documents of one route, pass every other document through.

Stats count only the gated route's documents, under a step named "<route>: <filter name>", so removal reasons read
per language. A filter that raises on a document drops that document with reason ``filter_error`` (counted,
logged, written to the exclusion output) instead of aborting the task.
"""

from __future__ import annotations

import contextlib

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.typeshelper import StatHints
from loguru import logger


class RouteGate(BaseFilter):
    type = "🚦 - GATE"

    def __init__(self, route: str, inner: BaseFilter, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.route = route
        self.inner = inner
        self.name = f"{route}: {inner.name}"
        self.stats.name = str(self)  # the base class named the stats before we knew the route

    def filter(self, doc):
        return self.inner.filter(doc)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:
            for doc in data:
                if doc.metadata.get("route") != self.route:
                    yield doc
                    continue
                self.stat_update(StatHints.total)
                with self.track_time():
                    try:
                        keep, reason = get_filter_result(self.inner.filter(doc))
                    except Exception as e:  # one bad document must not end the task
                        logger.warning(f"{self.name} raised {type(e).__name__} on {doc.id}: {e}")
                        keep, reason = False, "filter_error"
                if keep:
                    self.stat_update(StatHints.forwarded)
                    yield doc
                    continue
                self.stat_update(StatHints.dropped)
                reason = reason or "filtered"
                self.stat_update(f"dropped_{reason}")
                if writer is not None:
                    doc.metadata["filter_reason"] = reason
                    doc.metadata["filter_step"] = self.name
                    writer.write(doc, rank)
