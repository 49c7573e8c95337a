#!/usr/bin/env bash
# Wheels the lent GPU machine lacks for `just gpu-check` (its image has Python 3.12 with torch, accelerate,
# tokenizers, pandas, pyarrow, huggingface_hub, typer, ...; nothing outside it can be reached). Run here, in the
# repository root; then carry `.whl` in the device call and start its command with
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
# Versions are the project's pins (pyproject.toml). vLLM and flash-attn wheels are larger than a device call may
# carry (64 MiB): gpu-check records those checks as failed and runs the others.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
PY=${PYTHON:-.venv/bin/python}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl \
    pydantic==2.14.4 "pydantic-core==$("$PY" -c 'import pydantic_core; print(pydantic_core.__version__)')" \
    annotated-types typing-inspection loguru orjson==3.13.0 datasets==5.2.0 dill multiprocess \
    datatrove==0.10.1 trl==1.16.0 transformers==5.20.2 universal-pathlib==0.3.10 pathlib-abc hjson xxhash==3.8.2
# DeepSpeed is a source distribution: build its pure-Python wheel here (its ops compile at first use there).
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl deepspeed==0.19.8
du -sh .whl
ls .whl
