"""Kernel: every hand-off format, read and written here only, and the helpers that make writes atomic.

- ``documents``: document shards (corpus stages: clean -> dedup -> tokenize; the search tool)
- ``tokens``: token shards and the mix index (tokenize/mix -> pretraining)
- ``conversations``: conversation shards with manifest and quarantine (dialogue, feedback -> SFT, DPO, eval, chat)
- ``pairs``: lossless preference pairs (feedback -> DPO)
- ``pypi``: pinned packages downloaded as files, never installed (the real outside data the toolkit reads)
- ``atomic``: atomic files and folders, input fingerprints, ``StageRun`` (a stage's manifest keyed on what made it)
"""
