"""The chain's last job: the clean stage's merged report and the data report, as a datatrove step (so it runs after
the others on any executor)."""

from __future__ import annotations

from datatrove.pipeline.base import PipelineStep

from moss_data.chain.data_report import write_data_report
from moss_data.chain.recipe import CorpusRecipe
from moss_data.corpus.report import write_report


class ChainReport(PipelineStep):
    name = "📊 Corpus reports"
    type = "📝 - REPORT"

    def __init__(self, recipe: CorpusRecipe):
        super().__init__()
        self.recipe = recipe

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        write_report(self.recipe, self.recipe.output_dir, self.recipe.name)
        write_data_report(self.recipe.output_dir)
        return iter(())
