"""Synthetic-dialogue engine: generation backends, self-instruct, multi-turn conversations, dialogue shards."""
