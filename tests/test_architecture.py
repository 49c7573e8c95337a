"""The import contract (layers in pyproject.toml, checked by import-linter) and one spelling per hand-off layout."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: import-linter's own dependency
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("moss_data", "moss_train", "moss_demo")
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def lint(cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(cwd)}  # the copy under test, ahead of the installed (editable) packages
    return subprocess.run([*LINT, "--config", "pyproject.toml", "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_import_contract_holds_with_no_exceptions():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert len(config["contracts"]) == 3
    assert not any("ignore_imports" in c for c in config["contracts"])  # no exception listed
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_the_contract_catches_an_upward_import_and_a_trainer_reaching_into_a_stage(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    kernel = tmp_path / "moss_data" / "io" / "documents.py"
    kernel.write_text(kernel.read_text() + "\nfrom moss_data.corpus import layout  # noqa: E402,F401\n")
    trainer = tmp_path / "moss_train" / "sft.py"
    trainer.write_text(trainer.read_text() + "\nfrom moss_data.dialogue import stage  # noqa: E402,F401\n")
    result = lint(tmp_path)
    assert result.returncode == 1
    assert "moss_data.io.documents -> moss_data.corpus.layout" in result.stdout
    assert "moss_train.sft -> moss_data.dialogue.stage" in result.stdout
    assert "1 kept, 2 broken" in result.stdout


# Path segments of the hand-off layouts, and the one module allowed to join them into a path.
LAYOUT_OWNERS = {
    "tokens": "moss_data/io/tokens.py", "tokenizer": "moss_data/io/tokens.py", "mix": "moss_data/io/tokens.py",
    "part_00000": "moss_data/io/tokens.py", "index.npy": "moss_data/io/tokens.py",
    "tokenizer.json": "moss_data/io/tokens.py",
    "pairs": "moss_data/io/pairs.py",
    "shards": "moss_data/io/conversations.py", "quarantine": "moss_data/io/conversations.py",
    "clean": "moss_data/corpus/layout.py", "excluded": "moss_data/corpus/layout.py",
    "skipped": "moss_data/corpus/layout.py", "report": "moss_data/corpus/layout.py", "logs": "moss_data/corpus/layout.py",
    "kept": "moss_data/dedup/stage.py", "removed": "moss_data/dedup/stage.py",
    "final": "moss_train/config.py", "train_summary.json": "moss_train/config.py",
}


def path_joins() -> list[tuple[str, int, str]]:
    """Every ``something / "literal"`` in the packages: (file, line, literal)."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                        and isinstance(node.right.value, str):
                    found.append((str(path.relative_to(REPO)), node.lineno, node.right.value))
    return found


def test_each_hand_off_layout_is_spelled_once():
    joins = path_joins()
    assert any(f == "moss_data/io/tokens.py" and lit == "index.npy" for f, _, lit in joins)  # the scan sees them
    stray = [f"{f}:{line} joins {lit!r} (owned by {LAYOUT_OWNERS[lit]})" for f, line, lit in joins
             if lit in LAYOUT_OWNERS and f != LAYOUT_OWNERS[lit]]
    assert not stray, "\n".join(stray)
