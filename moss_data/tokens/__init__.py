"""Tokenizer building, memory-mapped token shards with document boundaries, and token-ratio mixing."""
