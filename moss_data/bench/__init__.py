"""Benchmarks (`just bench-*`): each reports our figure next to the library default measured in the same run."""
