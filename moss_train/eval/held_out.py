"""`moss-train eval`: held-out loss per category and tool-call accuracy of a model on conversation shards.

- Loss: the mean token loss over the template's trained spans (``loss_mask``), per category and overall, weighted
  by tokens.
- Tool-call accuracy: for every tool turn, the chat loop's first pass (to ``<eoc>``, the loop writing the
  ``<|Commands|>:`` marker if the model skips it) on the conversation so far; a call is right when the commands
  equal the reference's (names and arguments, whitespace ignored). The share that parse at all is reported too.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from moss_data.formats import CommandSyntaxError, Conversation, parse_commands
from moss_train.chat_template import LossMask


def _norm(commands) -> list[tuple[str, str]]:
    return [(c.name, "".join(c.argument.split())) for c in commands]


def conversation_losses(model, tokenizer, conversations: list[Conversation]) -> list[tuple[float, int]]:
    """(summed token loss, trained tokens) per conversation, under the tokenizer's chat template mask."""
    import torch

    out = []
    for conv in conversations:
        enc = tokenizer.apply_chat_template(conv.to_messages(), tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids = torch.tensor([enc["input_ids"]])
        labels = ids.clone()
        labels[0, torch.tensor(enc["assistant_masks"]) == 0] = -100
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        target = labels[0, 1:]
        keep = target != -100
        loss = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
        out.append((float(loss), int(keep.sum())))
    return out


def tool_call_accuracy(backend, conversations: list[Conversation], max_new_tokens: int = 64) -> dict:
    from moss_data.llm import SamplingParams
    from moss_data.tools.chat_loop import MossChat

    right = parsed = total = 0
    for conv in conversations:
        for t, turn in enumerate(conv.turns):
            if not turn.commands:
                continue
            total += 1
            chat = MossChat(backend, conv.capabilities, params=SamplingParams(max_new_tokens=max_new_tokens,
                                                                                temperature=0))
            chat.history = conv.turns[:t]
            _, commands_text, _ = chat.first_pass(chat.prompt(turn.human))
            try:
                commands = parse_commands(commands_text)
            except CommandSyntaxError:
                continue
            parsed += 1
            right += _norm(commands) == _norm(turn.commands)
    return {"tool_turns": total, "parsed": parsed, "correct": right,
            "accuracy": round(right / total, 4) if total else None}


def evaluate(model_dir: Path, data: list[Path], loss_mask: LossMask = "moss", max_conversations: int = 200,
             tool_calls: bool = True, tool_call_tokens: int = 64) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from moss_data.llm.transformers_backend import TransformersBackend
    from moss_train.data import load_conversations, moss_tokenizer

    conversations = load_conversations(data)[:max_conversations]
    tokenizer, added = moss_tokenizer(model_dir, loss_mask)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    if added:  # a model never trained with MOSS's tokens: they get fresh embedding rows (its loss on them is high)
        model.resize_token_embeddings(len(tokenizer))
    per_category: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for conv, (loss, tokens) in zip(conversations, conversation_losses(model, tokenizer, conversations)):
        per_category[conv.category][0] += loss
        per_category[conv.category][1] += tokens
    total_loss, total_tokens = sum(v[0] for v in per_category.values()), sum(v[1] for v in per_category.values())
    report = {
        "model": str(model_dir), "conversations": len(conversations), "loss_mask": loss_mask,
        "loss": round(total_loss / max(total_tokens, 1), 4),
        "loss_by_category": {c: {"loss": round(v[0] / max(v[1], 1), 4), "tokens": v[1]}
                             for c, v in sorted(per_category.items())},
    }
    if tool_calls:
        backend = TransformersBackend.from_loaded(model, tokenizer, Path(model_dir).name, batch_size=1)
        report["tool_calls"] = tool_call_accuracy(backend, conversations, tool_call_tokens)
    return report
