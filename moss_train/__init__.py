"""MOSS toolkit trainer backend (pretraining, SFT, preference-aware tuning, chat): issue 7.

Built so far: ``chat_template`` (the MOSS serialization as a tokenizer chat template with generation markers for
the two loss masks), ``data`` (shards -> messages, the MOSS tokenizer), ``sft`` and ``dpo`` (TRL trainers). It imports from ``moss_data`` only the shared formats and the tool executors.
"""
