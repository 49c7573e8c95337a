"""Self-instruct expansion: seed prompts -> new prompts per category and language, filtered, with counts per reason.

Filters, in order (reason names in brackets): the model stopped on its own [truncated]; length in characters
[too_short, too_long]; not a preamble ending in a colon ("Here's a new request:") [not_a_request]; not an assistant's line ("How can I
help you?") [assistant_voice]; no blacklisted
word (tasks a text model cannot do: images, video, files) [blacklisted]; lid.176 agrees with the target language
[wrong_language]; novelty [not_novel]. Novelty scales to millions of
prompts: an incremental MinHash LSH index over the accepted prompts proposes candidates, and ROUGE-L (on words, or
characters for Chinese) is computed only against those; a prompt with ROUGE-L >= ``novelty_threshold`` to any of
them is rejected.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pydantic import Field

from moss_data.llm import Generation, SamplingParams
from moss_data.llm.checks import ASSISTANT_VOICE
from moss_data.text.minhash import LSHParams, MinHasher
from moss_data.text.shingles import shingle_hashes, tokenize
from moss_data.text.scripts import LANGUAGE_NAMES
from moss_data.recipe import StrictModel
from moss_data.text.langid import LanguageIdentifier

BLACKLIST = ("image", "picture", "photo", "drawing", "video", "audio", "file", "attachment", "link",
             "图片", "照片", "图像", "视频", "音频", "文件", "链接")


class SelfInstructConfig(StrictModel):
    enabled: bool = True
    examples_per_request: int = Field(3, ge=1)
    novelty_threshold: float = Field(0.7, gt=0, le=1, description="ROUGE-L at or above this to a kept prompt: rejected")
    min_chars: dict[str, int] = Field(default_factory=lambda: {"en": 20, "zh": 8})
    max_chars: dict[str, int] = Field(default_factory=lambda: {"en": 600, "zh": 300})
    max_rounds: int = Field(20, ge=1, description="generation rounds before giving up on a category's quota")
    sampling: SamplingParams = SamplingParams(max_new_tokens=96, temperature=0.9, top_p=0.95)


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 of two token lists (longest common subsequence)."""
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


class NoveltyIndex:
    """Incremental LSH over short texts (2-gram shingles; characters for Chinese) with ROUGE-L verification."""

    def __init__(self, threshold: float, params: LSHParams = LSHParams(bands=32, rows=2, seed=7)):
        self.threshold = threshold
        self.params = params
        self.hasher = MinHasher(params)
        self.tokens: list[list[str]] = []
        self.buckets: list[dict[bytes, list[int]]] = [defaultdict(list) for _ in range(params.bands)]
        self.comparisons = 0

    def _bands(self, text: str) -> list[bytes]:
        sig = self.hasher.signature(shingle_hashes(text, "zh", n=2))
        r = self.params.rows
        return [sig[b * r : (b + 1) * r].tobytes() for b in range(self.params.bands)]

    def most_similar(self, text: str) -> float:
        return self._similarity(tokenize(text, "zh"), self._bands(text))

    def add(self, text: str) -> None:
        self._add(tokenize(text, "zh"), self._bands(text))

    def add_if_novel(self, text: str) -> bool:
        """Adds ``text`` unless it is within the threshold of a kept text; tokens and signature computed once."""
        tokens, bands = tokenize(text, "zh"), self._bands(text)
        if self._similarity(tokens, bands) >= self.threshold:
            return False
        self._add(tokens, bands)
        return True

    def _similarity(self, tokens: list[str], bands: list[bytes]) -> float:
        candidates = {i for b, key in enumerate(bands) for i in self.buckets[b].get(key, ())}
        self.comparisons += len(candidates)
        return max((rouge_l(tokens, self.tokens[i]) for i in candidates), default=0.0)

    def _add(self, tokens: list[str], bands: list[bytes]) -> None:
        index = len(self.tokens)
        self.tokens.append(tokens)
        for b, key in enumerate(bands):
            self.buckets[b][key].append(index)

    def __len__(self) -> int:
        return len(self.tokens)


# Small models often answer with a preamble instead of a request ("Here's a new request:").
_NOT_A_REQUEST = re.compile(r"(^\s*(here'?s|here is|sure|certainly|以下是|好的)\b.*[:：]\s*$)|[:：]\s*$", re.IGNORECASE)
_PREFIX = re.compile(r"^\s*(?:new request|request|task|新的请求|请求|任务)\s*[:：]\s*", re.IGNORECASE)


def clean_prompt(text: str) -> str:
    text = text.strip().split("\n\n")[0].strip()
    text = _PREFIX.sub("", text)
    return text.strip().strip('"“”').strip()


@dataclass
class PromptFilter:
    cfg: SelfInstructConfig
    language: str
    index: NoveltyIndex
    router: LanguageIdentifier
    rejected: Counter = field(default_factory=Counter)

    def check(self, text: str, finish_reason: str) -> str | None:
        """None if the prompt is accepted (and then indexed), else the rejection reason."""
        if finish_reason != "stop":
            return "truncated"
        if len(text) < self.cfg.min_chars.get(self.language, 10):
            return "too_short"
        if len(text) > self.cfg.max_chars.get(self.language, 1000):
            return "too_long"
        if _NOT_A_REQUEST.search(text):
            return "not_a_request"
        if ASSISTANT_VOICE.search(text):
            return "assistant_voice"
        lowered = text.lower()
        if any(word in lowered for word in BLACKLIST):
            return "blacklisted"
        language, score = self.router.classify(text)
        if language != self.language:
            return "wrong_language"
        if not self.index.add_if_novel(text):
            return "not_novel"
        return None


Requester = Callable[[int, list[list[dict]], SamplingParams], list[Generation]]


def expand(
    request: Requester,
    seeds: dict[tuple[str, str], list[str]],
    quota: int | dict[tuple[str, str], int],
    cfg: SelfInstructConfig,
    template: str,
    seed: int = 0,
) -> tuple[dict[tuple[str, str], list[str]], Counter]:
    """New prompts per (language, category) until ``quota`` each (one number, or one per key) or ``max_rounds``.
    Returns them and the rejection counts (``accepted`` included).

    A round asks for every prompt still missing at once (``request(round, requests, params)``: all in flight
    together); the answers are then filtered in request order, because novelty depends on what was accepted
    before. Examples are drawn from a seeded generator, so a resumed run asks the same requests again."""
    rng = random.Random(seed)
    quotas = quota if isinstance(quota, dict) else {key: quota for key in seeds}
    router = LanguageIdentifier()
    counts: Counter = Counter()
    accepted: dict[tuple[str, str], list[str]] = {key: [] for key in seeds}
    filters = {}
    for key, pool in seeds.items():
        index = NoveltyIndex(cfg.novelty_threshold)
        for s in pool:
            index.add(s)  # generated prompts must be novel against the seeds too
        filters[key] = PromptFilter(cfg, key[0], index, router)
    for round_ in range(cfg.max_rounds):
        todo = [key for key in seeds for _ in range(quotas[key] - len(accepted[key]))]
        if not todo:
            break
        requests = []
        for language, category in todo:
            pool = seeds[(language, category)] + accepted[(language, category)]
            examples = rng.sample(pool, min(cfg.examples_per_request, len(pool)))
            text = template.format(category=category, language_name=LANGUAGE_NAMES[language],
                                   examples="\n".join(f"- {e}" for e in examples))
            requests.append([{"role": "user", "content": text}])
        params = cfg.sampling.model_copy(update={"seed": cfg.sampling.seed + 1000 * round_})
        for key, gen in zip(todo, request(round_, requests, params)):
            if len(accepted[key]) >= quotas[key]:
                counts["over_quota"] += 1
                continue
            prompt = clean_prompt(gen.text)
            reason = filters[key].check(prompt, gen.finish_reason)
            counts[reason or "accepted"] += 1
            if reason is None:
                accepted[key].append(prompt)
    counts["lsh_comparisons"] = sum(f.index.comparisons for f in filters.values())
    return accepted, counts


def load_seeds(folder: Path, languages: list[str], categories: list[str]) -> dict[tuple[str, str], list[str]]:
    import orjson

    seeds: dict[tuple[str, str], list[str]] = {(lang, cat): [] for lang in languages for cat in categories}
    for lang in languages:
        path = folder / f"{lang}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"seed prompts {path} not found")
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            item = orjson.loads(line)
            if item["category"] in categories:
                seeds[(lang, item["category"])].append(item["prompt"])
    empty = [key for key, pool in seeds.items() if not pool]
    if empty:
        raise ValueError(f"no seed prompts for {empty}: add some to {folder}")
    return seeds
