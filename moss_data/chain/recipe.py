"""The corpus recipe: one YAML file -> one validated :class:`CorpusRecipe` (see recipes/corpus/*.yaml).

It composes the stages' own sections: the clean stage's keys at the top level (:class:`CleanConfig`), then
``executor``, ``dedup``, ``tokenize`` and ``mix``.
"""

from __future__ import annotations

from moss_data.executors import ExecutorConfig
from moss_data.corpus.config import CleanConfig
from moss_data.dedup.config import DedupConfig
from moss_data.recipe import DataPath
from moss_data.tokens.config import MixConfig, TokenizeConfig


class CorpusRecipe(CleanConfig):
    name: str
    output_dir: DataPath
    executor: ExecutorConfig = ExecutorConfig()
    dedup: DedupConfig = DedupConfig()
    tokenize: TokenizeConfig = TokenizeConfig()
    mix: MixConfig = MixConfig()
