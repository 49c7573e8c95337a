"""MOSS toolkit data engine: corpus cleaning (and, in later stages, dialogue generation and feedback)."""

__version__ = "0.1.0"
