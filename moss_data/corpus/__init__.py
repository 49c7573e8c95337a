"""Stage: clean. Raw web pages and code -> extracted, language-routed, filtered, PII-scrubbed document shards."""
