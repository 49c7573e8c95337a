"""The feedback stage: dialogue shards -> judged candidates -> preference pairs, a reward model, tagged shards.

The steps, one module each (every step resumable; outputs under ``output_dir``):

Candidates and judgements are generated as rollouts on datatrove's inference runner (``generation:``: a backend
for the assistant that samples candidates and one for the judge).

1. :mod:`~moss_data.feedback.contexts`: every assistant response of the input conversations, with its context.
2. :mod:`~moss_data.feedback.candidates` (``candidates.jsonl``): the original plus sampled responses, checked.
3. :mod:`~moss_data.feedback.judging` (``judgements.jsonl``, ``verdicts.jsonl``): rubric scores, self-consistency,
   position bias; unparsable judgements to ``quarantine/``.
4. :mod:`~moss_data.feedback.pairs` (``pairs/``): best vs worst with a margin, lossless, split train/held-out.
5. :mod:`~moss_data.feedback.reward` (``reward_model/``): TRL RewardTrainer on the training pairs; agreement figures.
6. :mod:`~moss_data.feedback.tags`: quality tags; tagged conversations to ``shards/`` (the conversation shard format).
7. :mod:`~moss_data.feedback.summary` and :mod:`~moss_data.feedback.report`: ``summary.json``, ``report.md``,
   ``tags.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

from loguru import logger
from pydantic import Field

from moss_data.feedback.cache import JsonlCache
from moss_data.feedback.candidates import make_candidates
from moss_data.feedback.contexts import contexts_of
from moss_data.feedback.judging import Judging, again_key, consistency_sample, position_sample
from moss_data.feedback.pairs import build_pairs, with_prompts_from
from moss_data.feedback.report import write_report
from moss_data.feedback.reward import RewardModelConfig, reward_model_for
from moss_data.feedback.summary import summarize
from moss_data.feedback.tags import assign_tags, tagged
from moss_data.io.atomic import atomic_write_text
from moss_data.io.conversations import ShardStore, read_conversations
from moss_data.io.pairs import write_pairs
from moss_data.llm import SamplingParams
from moss_data.llm.rollouts import GenerationConfig, run_rollouts
from moss_data.recipe import StrictModel


class FeedbackRecipe(StrictModel):
    name: str
    input_dir: Path = Field(description="a dialogue stage's output folder (its shards/ are read)")
    output_dir: Path
    prompts_dir: Path = Path("prompts")
    generation: GenerationConfig = Field(GenerationConfig(), description="assistant: samples the candidates; "
                                         "judge: scores and compares them (default: the assistant's model)")
    candidates_per_context: int = Field(3, ge=1, description="the original response plus sampled ones")
    candidate_sampling: SamplingParams = SamplingParams(max_new_tokens=256, temperature=0.9, top_p=0.95)
    judge_sampling: SamplingParams = SamplingParams(max_new_tokens=96, temperature=0.3, top_p=0.9)
    consistency_sample: int = Field(16, ge=0, description="candidates judged twice (another seed)")
    position_sample: int = Field(16, ge=0, description="candidate pairs compared in both orders")
    min_margin: int = Field(1, ge=1, description="overall-score gap between chosen and rejected")
    heldout_share: float = Field(0.25, ge=0, lt=1)
    untagged_share: float = Field(0.1, ge=0, le=1, description="responses left untagged on purpose")
    reward_model: RewardModelConfig = RewardModelConfig()
    external_pairs: list[Path] = Field(default_factory=list, description="labelled preference sets (JSON, "
                                       "LLaMA-Factory DPO format) the reward model is tested on")
    external_limit: int = Field(100, ge=1, description="pairs used from each external set")
    seed: int = 0


class FeedbackStage:
    """Runs the steps in order over one output folder. Candidates and judgements are rollouts on the generation
    runner (work folders under ``generation/``), started only for what is not cached yet: a resumed run whose work
    is all cached starts no server and loads no model."""

    def __init__(self, recipe: FeedbackRecipe):
        self.r = recipe
        self.out = recipe.output_dir
        self.out.mkdir(parents=True, exist_ok=True)
        self.candidates = JsonlCache(self.out / "candidates.jsonl")
        self.judging = Judging(JsonlCache(self.out / "judgements.jsonl"), JsonlCache(self.out / "verdicts.jsonl"),
                               self.run_rollouts, recipe.prompts_dir, recipe.judge_sampling)
        self.store = ShardStore(self.out)

    def run_rollouts(self, name: str, items: dict, rollout, context) -> dict:
        return run_rollouts(name, items, rollout, self.out / "generation", self.r.generation, context)

    @property
    def judge_label(self) -> str:
        return self.r.generation.labels()["judge"]

    def run(self) -> dict:
        r = self.r
        conversations = read_conversations(r.input_dir)
        contexts = [ctx for conv, lang, _ in conversations for ctx in contexts_of(conv, lang)]
        logger.info(f"feedback: {len(conversations)} conversations, {len(contexts)} responses to judge")
        by_context = make_candidates(contexts, self.candidates, self.run_rollouts, r.candidates_per_context,
                                     r.candidate_sampling, r.seed)
        ctx_by_id = {c.context_id: c for c in contexts}
        items = [(cand["key"], ctx_by_id[cid], cand) for cid, cands in by_context.items() for cand in cands]
        self.judging.judge(items, r.seed, "judge")
        sample = consistency_sample(items, r.consistency_sample)
        self.judging.judge([(again_key(k), c, cand) for k, c, cand in sample], r.seed + 10_007, "judge-again")
        self.judging.quarantine_failed(self.store, self.judge_label)
        compared = position_sample(by_context, r.position_sample)
        self.judging.compare(ctx_by_id, by_context, compared, r.seed)

        pairs = build_pairs(contexts, by_context, self.judging.judged, r.min_margin, r.heldout_share, self.judge_label)
        rm = reward_model_for(pairs, self.out / "reward_model", r.reward_model, r.external_pairs, r.external_limit)
        tags, tag_source = assign_tags(contexts, by_context, self.judging.judged, rm, r.untagged_share)
        tagged_convs = {conv.conversation_id: (tagged(conv, tags), language, prov)
                        for conv, language, prov in conversations}
        self.write_tagged(tagged_convs, tag_source)
        write_pairs(self.out, with_prompts_from(pairs, {cid: conv for cid, (conv, _, _) in tagged_convs.items()}))
        summary = summarize(self.judging, items, sample, compared, pairs, getattr(rm, "figures", None), tags,
                            tag_source, r.untagged_share, self.store.counts()["shards"])
        write_report(self.out, summary)
        return summary

    def write_tagged(self, conversations: dict, source: str) -> None:
        done = self.store.done_ids()
        for cid, (conv, language, prov) in conversations.items():
            if cid not in done:
                self.store.add_conversation(conv, language, prov | {"feedback": {"judge": self.judge_label,
                                                                                 "tag_source": source}})
        self.store.flush()


def run_feedback(recipe: FeedbackRecipe) -> dict:
    summary = FeedbackStage(recipe).run()
    atomic_write_text(recipe.output_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    return summary
