"""MOSS toolkit data engine: corpus cleaning (and, in later stages, dialogue generation and feedback)."""

from moss_data.io import stable_gzip as _stable_gzip  # noqa: F401  (writers' gzip headers without time or name)

__version__ = "0.1.0"
