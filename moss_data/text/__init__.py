"""Kernel: language ID (lid.176), scripts and CJK helpers, language-aware shingles and MinHash signatures, and the
reply checks shared by the dialogue engine and the evaluation (refusals, honesty, offensive language)."""
