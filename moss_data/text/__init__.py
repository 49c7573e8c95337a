"""Kernel: language ID (lid.176), scripts and CJK helpers, language-aware shingles and MinHash signatures."""
