"""Orchestrator: the corpus chain (clean -> dedup -> tokenize -> mix -> report), its composite recipe, executors."""
