"""MOSS toolkit trainer backend (pretraining, SFT, preference-aware tuning, chat): not built yet, see issue 7.

It will import from ``moss_data`` only the shared formats and the tool executors.
"""
