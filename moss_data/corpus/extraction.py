"""HTML -> text with trafilatura, every page accounted for.

datatrove's extractor drops a page silently when trafilatura returns nothing, times out, fails or kills its worker
(only a counter says so), so those pages reached neither ``excluded/`` nor ``skipped/``. This step writes each such
page, as it came in, to the exclusion writer with ``filter_reason`` = ``extraction_empty`` / ``extraction_timeout`` /
``extraction_error`` / ``extraction_crash``. trafilatura's own duplicate removal (``deduplicate``, which blanks
paragraphs it saw in earlier pages of the same process, so output depended on page order) is off: the dedup stage
removes duplicates, with lineage.
"""

from __future__ import annotations

import contextlib

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.extractors.base import ExtractorSandbox
from datatrove.utils.typeshelper import StatHints
from loguru import logger


class AccountedTrafilatura(Trafilatura):
    name = "⛏ Trafilatura (accounted)"

    def __init__(self, favour_precision: bool = True, timeout: float = 5.0, exclusion_writer=None):
        super().__init__(favour_precision=favour_precision, timeout=timeout, deduplicate=False)
        self.exclusion_writer = exclusion_writer

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with (self.exclusion_writer or contextlib.nullcontext()) as excluded, \
                ExtractorSandbox(timeout=self.timeout, warmup_text="") as extractor:

            def exclude(doc, reason: str) -> None:
                self.stat_update(StatHints.dropped)
                self.stat_update(f"dropped_{reason}")
                if excluded is not None:
                    doc.metadata["filter_reason"] = reason
                    excluded.write(doc, rank)

            for doc in data:
                self.stat_update(StatHints.total)
                with self.track_time():
                    try:
                        text = extractor.process_document(doc.text, self.extract)
                    except TimeoutError:
                        exclude(doc, "extraction_timeout")
                        continue
                    except EOFError:  # the extraction process died (e.g. out of memory on a hostile page)
                        exclude(doc, "extraction_crash")
                        continue
                    except Exception as e:  # trafilatura raised on this page
                        logger.warning(f"extraction failed on {doc.id}: {e}")
                        exclude(doc, "extraction_error")
                        continue
                if not text or not text.strip():
                    exclude(doc, "extraction_empty")
                    continue
                doc.text = text
                self.stat_update(StatHints.forwarded)
                self.update_doc_stats(doc)
                yield doc
