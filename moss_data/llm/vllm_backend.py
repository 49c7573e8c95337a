"""vLLM's offline engine (the ``gpu`` extra), batched."""

from __future__ import annotations

from pathlib import Path

from moss_data.llm.base import BackendError, Generation, SamplingParams, is_prefilled


class VLLMBackend:
    """vLLM's offline engine (GPU machines; `pip install -e '.[gpu]'`)."""

    supports_json_schema = True

    def __init__(self, model_dir: Path, gpu_memory_utilization: float = 0.85, max_model_len: int = 4096):
        try:
            from vllm import LLM
        except ImportError as e:
            raise BackendError("the vllm backend needs the gpu extra: pip install -e '.[gpu]'") from e
        self.name = f"vllm:{Path(model_dir).name}"
        self.llm = LLM(model=str(model_dir), gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)

    def _sampling(self, params: SamplingParams):
        from vllm import SamplingParams as VSampling

        extra = {}
        if params.json_schema is not None:
            try:  # vLLM >= 0.10
                from vllm.sampling_params import StructuredOutputsParams

                extra["structured_outputs"] = StructuredOutputsParams(json=params.json_schema)
            except ImportError:
                from vllm.sampling_params import GuidedDecodingParams

                extra["guided_decoding"] = GuidedDecodingParams(json=params.json_schema)
        return VSampling(max_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
                         repetition_penalty=params.repetition_penalty, seed=params.seed, stop=params.stop or None,
                         **extra)

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[Generation]:
        # vLLM's chat takes one continue/add-prompt setting per call: split prefilled and plain conversations.
        out: list[Generation | None] = [None] * len(conversations)
        for prefilled in (False, True):
            idx = [i for i, c in enumerate(conversations) if is_prefilled(c) == prefilled]
            if idx:
                outputs = self.llm.chat([conversations[i] for i in idx], self._sampling(params), use_tqdm=True,
                                        add_generation_prompt=not prefilled, continue_final_message=prefilled)
                for i, g in zip(idx, self._generations(outputs)):
                    out[i] = g
        return out  # type: ignore[return-value]

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Generation]:
        return self._generations(self.llm.generate(prompts, self._sampling(params), use_tqdm=True))

    @staticmethod
    def _generations(outputs) -> list[Generation]:
        return [
            Generation(
                text=o.outputs[0].text,
                finish_reason=o.outputs[0].finish_reason or "stop",
                prompt_tokens=len(o.prompt_token_ids or []),
                completion_tokens=len(o.outputs[0].token_ids),
            )
            for o in outputs
        ]
