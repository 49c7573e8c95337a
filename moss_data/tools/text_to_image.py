"""Text-to-image: a diffusers pipeline from a local model folder, on a GPU; otherwise a clear "not available".

Never a fake image. The pipeline is loaded once per process (``TextToImage`` keeps it) from ``model_dir`` (a
diffusers folder the user provides: nothing is downloaded), runs ``steps`` denoising steps at ``size``x``size`` and
saves a PNG named by a hash of the description under ``out_dir``; the result is MOSS's "Image generated
successfully." and the path is kept in the call record. Descriptions are capped in length; a failure of any kind is
a failed call with the reason, not an exception in the trace generator or the chat loop.
"""

from __future__ import annotations

import threading
from pathlib import Path

import xxhash

from moss_data.tools.math_tools import ToolResult

NOT_AVAILABLE = "Text-to-image is not available here."
GENERATED = "Image generated successfully."
MAX_DESCRIPTION_CHARS = 500


class TextToImage:
    def __init__(self, model_dir: Path | None = None, out_dir: Path = Path("data/images"), steps: int = 25,
                 size: int = 512):
        self.model_dir, self.out_dir, self.steps, self.size = model_dir, Path(out_dir), steps, size
        self._pipeline = None
        self._lock = threading.Lock()
        self.unavailable = self._why_unavailable()

    def _why_unavailable(self) -> str:
        if self.model_dir is None:
            return "no text-to-image model is configured (a local diffusers folder)"
        try:
            import diffusers  # noqa: F401
            import torch
        except ImportError as e:
            return f"diffusers is not installed ({e})"
        if not torch.cuda.is_available():
            return "no GPU"
        if not (Path(self.model_dir) / "model_index.json").exists():
            return f"{self.model_dir} is not a diffusers model folder (no model_index.json)"
        return ""

    def __call__(self, description: str) -> ToolResult:
        if self.unavailable:
            return ToolResult(False, NOT_AVAILABLE, f"not available: {self.unavailable}")
        if not description.strip() or len(description) > MAX_DESCRIPTION_CHARS:
            return ToolResult(False, "No result.", f"description must be 1-{MAX_DESCRIPTION_CHARS} characters")
        path = self.out_dir / f"{xxhash.xxh3_64_hexdigest(description)}.png"
        if path.exists():  # the same description again (a trace's check re-runs its calls): the image made before
            return ToolResult(True, GENERATED, str(path))
        try:
            with self._lock:  # one load, one generation at a time: rollouts call from worker threads
                return self._generate(description, path)
        except Exception as e:  # noqa: BLE001 - a GPU/model failure is a failed call with its reason
            return ToolResult(False, "No result.", f"{type(e).__name__}: {e}")

    def _generate(self, description: str, path: Path) -> ToolResult:
        import torch

        if self._pipeline is None:
            from diffusers import AutoPipelineForText2Image

            self._pipeline = AutoPipelineForText2Image.from_pretrained(
                str(self.model_dir), torch_dtype=torch.float16).to("cuda")
        image = self._pipeline(description, num_inference_steps=self.steps, height=self.size,
                               width=self.size).images[0]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        image.save(path)
        return ToolResult(True, GENERATED, str(path))
