"""Kernel: language ID (lid.176), scripts and CJK helpers, language-aware shingles and MinHash signatures, and the
reply checks shared across stages: refusals and honesty (dialogue engine and evaluation), offensive language
(dialogue engine and the corpus toxicity filter)."""
