"""Corpus engine: raw web pages and code -> extracted, language-routed, filtered, PII-scrubbed document shards."""
