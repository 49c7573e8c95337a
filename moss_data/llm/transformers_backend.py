"""A local model folder run by transformers (the default: SmolLM2-135M-Instruct on CPU), batched, left-padded."""

from __future__ import annotations

from pathlib import Path

from moss_data.llm.base import Generation, SamplingParams, cut_at_stop, is_prefilled


class TransformersBackend:
    supports_json_schema = False  # no constrained decoding here: callers parse tolerantly

    def __init__(self, model_dir: Path, batch_size: int = 8, device: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        # fp32 on CPU (bf16 matmuls are slow on CPUs without AMX), bf16 on a GPU
        dtype = torch.bfloat16 if device == "cuda" else torch.float32

        self.name = f"transformers:{Path(model_dir).name}"
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.tokenizer.padding_side = "left"  # decoder-only batching: pad on the left so generations line up
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(device)
        self.model.eval()
        self._torch = torch

    @classmethod
    def from_loaded(cls, model, tokenizer, name: str, batch_size: int = 8) -> "TransformersBackend":
        """A backend over a model and tokenizer already in memory (evaluation right after loading or training)."""
        import torch

        self = cls.__new__(cls)
        self.name, self.batch_size, self.model, self._torch = f"transformers:{name}", batch_size, model.eval(), torch
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        return self

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[Generation]:
        return self.complete([self.render(c) for c in conversations], params)

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Generation]:
        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            out += self._batch(prompts[start : start + self.batch_size], params, start)
        return out

    def choose(self, prompts: list[str], choices: list[str]) -> list[dict[str, float]]:
        """Constrained decoding of one step: for each prompt (plain text), the model's next-token probabilities over
        the given choices (each one token), renormalized. A JSON-schema field with a small enum (a 1-5 score, a
        letter) decodes exactly this way; callers sample or take the argmax."""
        torch = self._torch
        ids = []
        for choice in choices:
            tokens = self.tokenizer.encode(choice, add_special_tokens=False)
            if len(tokens) != 1:
                raise ValueError(f"choice {choice!r} is {len(tokens)} tokens for this tokenizer; choices must be one")
            ids.append(tokens[0])
        out = []
        for start in range(0, len(prompts), self.batch_size):
            enc = self.tokenizer(prompts[start : start + self.batch_size], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.model.device)
            with torch.no_grad():
                logits = self.model(**enc).logits[:, -1, :]  # left padding: the last position is each prompt's end
            probs = torch.softmax(logits[:, ids].float(), dim=-1)
            out += [dict(zip(choices, row.tolist())) for row in probs]
        return out

    def stream(self, prompt: str, params: SamplingParams, on_text) -> Generation:
        """One plain-text completion, its text handed to ``on_text`` piece by piece as it is generated (a chat
        CLI shows it live); returns the whole generation, cut at a stop string like ``complete``."""
        import threading

        from transformers import TextIteratorStreamer

        torch = self._torch
        enc = self.tokenizer([prompt], return_tensors="pt", add_special_tokens=False).to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=False)
        sampled = params.temperature > 0
        kwargs = dict(**enc, max_new_tokens=params.max_new_tokens, do_sample=sampled,
                      temperature=params.temperature if sampled else None, top_p=params.top_p if sampled else None,
                      repetition_penalty=params.repetition_penalty, pad_token_id=self.tokenizer.pad_token_id,
                      stop_strings=params.stop or None, tokenizer=self.tokenizer, streamer=streamer,
                      return_dict_in_generate=True)
        torch.manual_seed(params.seed)
        result = {}
        worker = threading.Thread(target=lambda: result.update(out=self.model.generate(**kwargs)))
        worker.start()
        shown = ""
        for piece in streamer:
            text, stopped = cut_at_stop(shown + piece, params.stop)
            eos = self.tokenizer.eos_token or ""
            text = text.split(eos)[0] if eos and eos in text else text
            if len(text) > len(shown):
                on_text(text[len(shown):])
                shown = text
            if stopped:
                break
        worker.join()
        new = result["out"].sequences[0, enc["input_ids"].shape[1]:].tolist()
        ended = self.tokenizer.eos_token_id in new
        if ended:
            new = new[: new.index(self.tokenizer.eos_token_id)]
        text, stopped = cut_at_stop(self.tokenizer.decode(new, skip_special_tokens=not params.stop), params.stop)
        return Generation(text=text, finish_reason="stop" if ended or stopped else "length",
                          prompt_tokens=int(enc["input_ids"].shape[1]), completion_tokens=len(new))

    def render(self, conversation: list[dict]) -> str:
        """The chat template applied (continuing a prefilled assistant message), as plain text."""
        return self.tokenizer.apply_chat_template(conversation, add_generation_prompt=not is_prefilled(conversation),
                                                  continue_final_message=is_prefilled(conversation), tokenize=False)

    def _batch(self, prompts: list[str], params: SamplingParams, offset: int) -> list[Generation]:
        torch = self._torch
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.model.device)
        torch.manual_seed(params.seed + offset)
        with torch.no_grad():
            sampled = params.temperature > 0
            ids = self.model.generate(
                **enc,
                max_new_tokens=params.max_new_tokens,
                do_sample=sampled,
                temperature=params.temperature if sampled else None,
                top_p=params.top_p if sampled else None,
                repetition_penalty=params.repetition_penalty,
                pad_token_id=self.tokenizer.pad_token_id,
                stop_strings=params.stop or None,
                tokenizer=self.tokenizer,
            )
        gens = []
        prompt_len = enc["input_ids"].shape[1]
        eos = self.tokenizer.eos_token_id
        for row, mask in zip(ids, enc["attention_mask"]):
            new = row[prompt_len:].tolist()
            ended = eos in new
            if ended:
                new = new[: new.index(eos)]
            # A row that hit a stop string gets padding until the batch ends; cut at the stop string. Decode with
            # special tokens kept when there are stop strings: MOSS's <eoc>/<eom> are special tokens in a trained
            # MOSS tokenizer, and skipping them would hide the stop.
            text = self.tokenizer.decode(new, skip_special_tokens=not params.stop)
            text, stopped = cut_at_stop(text, params.stop)
            if params.stop and not stopped:
                text = self.tokenizer.decode(new, skip_special_tokens=True)
            gens.append(
                Generation(
                    text=text,
                    finish_reason="stop" if ended or stopped else "length",
                    prompt_tokens=int(mask.sum()),
                    completion_tokens=sum(t != self.tokenizer.pad_token_id for t in new) + (1 if ended else 0),
                )
            )
        return gens
