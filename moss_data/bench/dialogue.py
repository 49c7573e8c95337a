"""`just bench-dialogue`: orchestration overhead of the dialogue pipeline against the raw backend, and a GPU-hour
projection for MOSS's 1.1M conversations.

Overhead: the same prompts (the seed prompts, both languages) answered once by ``backend.chat`` directly and once
through the pipeline (jobs, output checks, MOSS records, parquet shards), greedy decoding so both do the same model
work, in the same process. Target: <= 10%.

Projection: with P prompt and C completion tokens per turn measured here and n = MOSS's mean turn count, a
conversation costs about n*P (system prompt and request, read at every turn) + C*n*(n+1) (each turn's user and
assistant text, generated once and re-read at every later turn) tokens; over a vLLM throughput that is measured on
a GPU when a session has one, else cited (THROUGHPUT_SOURCE). A projection, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from moss_data.llm import BackendConfig, SamplingParams, build_backend
from moss_data.dialogue.conversation import Job, run_conversations
from moss_data.dialogue.selfinstruct import load_seeds
from moss_data.io.conversations import ShardStore
from moss_data.dialogue.stage import CATEGORIES, MEAN_TURNS
from moss_data.formats import Capabilities, meta_instruction

CONVERSATIONS = 1_100_000
# Cited, not measured here (no GPU in this session): vLLM offline throughput benchmark in Neural Magic's nm-vllm CI,
# Llama-2-7b-chat on one NVIDIA A10G, 256 input + 128 output tokens, 1000 prompts: 3.84 requests/s
# (github.com/neuralmagic/nm-vllm, commit 4c041221). Total tokens/s = 3.84 * (256 + 128).
THROUGHPUT_TOKENS_S = 3.84 * (256 + 128)
THROUGHPUT_SOURCE = "nm-vllm CI benchmark_throughput, Llama-2-7b-chat, 1x A10G, 256 in/128 out: 3.84 req/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/bench"))
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    backend = build_backend(BackendConfig(batch_size=8))
    seeds = load_seeds(Path("prompts/seeds"), ["en", "zh"], list(CATEGORIES))
    items = [(lang, cat, p) for (lang, cat), prompts in sorted(seeds.items()) for p in prompts]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0)
    system = {"role": "system", "content": meta_instruction(Capabilities())}
    backend.chat([[system, {"role": "user", "content": "warm up"}]], params)

    start = time.perf_counter()
    raw = backend.chat([[system, {"role": "user", "content": p}] for _, _, p in items], params)
    raw_s = time.perf_counter() - start

    out = args.out / "dialogue_bench"
    shutil.rmtree(out, ignore_errors=True)
    store = ShardStore(out, rows_per_shard=500)
    jobs = [Job(f"{lang}-{i}", cat, lang, p, target_turns=1) for i, (lang, cat, p) in enumerate(items)]
    start = time.perf_counter()
    run_conversations(backend, jobs, store, params, params, "{transcript}{language_name}", {"model": backend.name},
                      batch_size=8 * 1000)  # one pipeline batch: the backend batches by 8 as in the raw run
    pipe_s = time.perf_counter() - start

    prompt_tokens = sum(g.prompt_tokens for g in raw) / len(raw)
    completion_tokens = sum(g.completion_tokens for g in raw) / len(raw)
    mean_turns = sum(MEAN_TURNS.values()) / len(MEAN_TURNS)
    per_conversation = mean_turns * prompt_tokens + completion_tokens * mean_turns * (mean_turns + 1)
    gpu_hours = CONVERSATIONS * per_conversation / THROUGHPUT_TOKENS_S / 3600
    result = {
        "prompts": len(items),
        "raw_backend_s": round(raw_s, 2),
        "pipeline_s": round(pipe_s, 2),
        "overhead": round(pipe_s / raw_s - 1, 4),
        "tokens_per_turn": {"prompt": round(prompt_tokens, 1), "completion": round(completion_tokens, 1)},
        "mean_turns": round(mean_turns, 2),
        "tokens_per_conversation_projected": round(per_conversation),
        "vllm_tokens_per_s": round(THROUGHPUT_TOKENS_S),
        "vllm_source": THROUGHPUT_SOURCE,
        "gpu_hours_for_1.1M_conversations": round(gpu_hours),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dialogue.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
