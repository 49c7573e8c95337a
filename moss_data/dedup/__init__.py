"""Deduplication: exact (normalized content hash), URL, and MinHash-LSH near-dedup with verified clusters."""
