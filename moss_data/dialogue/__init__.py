"""Stage: synthetic dialogues (self-instruct, multi-turn conversations, tool-use traces) into conversation shards."""
