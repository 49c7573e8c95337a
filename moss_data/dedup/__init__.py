"""Deduplication: exact (normalized content hash), URL, and MinHash-LSH near-dedup with verified, non-chaining
decisions, as a plan of datatrove jobs (:func:`moss_data.dedup.stage.dedup_plan`)."""
