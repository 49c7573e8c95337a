"""An external, human-curated preference set used as test input for the reward model: the DPO demo sets in
LLaMA-Factory's source distribution (``data/dpo_en_demo.json``, ``data/dpo_zh_demo.json``, 300 pairs each; data
license CC BY-NC: test input only, never shipped or trained on here). Fetched from PyPI at set-up."""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path

from moss_data.io.pypi import download_package

PACKAGE = "llamafactory==0.9.5"
MEMBERS = ("data/dpo_en_demo.json", "data/dpo_zh_demo.json")
DEFAULT_DIR = Path("data/external/llamafactory")


def fetch_preference_sets(dest: Path = DEFAULT_DIR) -> list[Path]:
    """Download the sdist (no install) and extract the two demo sets; a no-op when they are there."""
    dest = Path(dest)
    wanted = [dest / Path(m).name for m in MEMBERS]
    if all(p.exists() for p in wanted):
        return wanted
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = download_package(PACKAGE, Path(tmp), purpose="the external preference set", source=True)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = member.name.split("/", 1)[-1]
                if name in MEMBERS:
                    member.name = Path(name).name
                    tar.extract(member, dest, filter="data")
    return wanted


def load_preference_pairs(path: Path, limit: int | None = None) -> list[dict]:
    """LLaMA-Factory's sharegpt-style DPO rows -> TRL conversational preference pairs."""
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    pairs = []
    for row in json.loads(Path(path).read_text(encoding="utf-8"))[:limit]:
        prompt = [{"role": roles[t["from"]], "content": t["value"]} for t in row["conversations"]]
        pairs.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": row["chosen"]["value"]}],
                      "rejected": [{"role": "assistant", "content": row["rejected"]["value"]}]})
    return pairs
