"""Every shipped recipe YAML parses against its recipe's dataclasses and opens with the command that runs it."""

import glob
import os

import pytest

from tests.conftest import REPO, load_recipe

RECIPE_OF = {
    "bert": "pretrain_bert",
    "elmo": "pretrain_elmo",
    "classification": "finetune_classification",
    "translation": "finetune_seq2seq",
    "summarization": "finetune_seq2seq",
    "report": "lecture_report",
}
CONFIGS = sorted(glob.glob(os.path.join(REPO, "recipes", "configs", "*", "*.yaml")))


def test_every_config_folder_has_a_recipe():
    folders = {os.path.basename(os.path.dirname(p)) for p in CONFIGS}
    assert folders and folders <= set(RECIPE_OF), folders - set(RECIPE_OF)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, os.path.join(REPO, "recipes", "configs")))
def test_config_parses_and_documents_its_command(path):
    folder = os.path.basename(os.path.dirname(path))
    recipe = RECIPE_OF[folder]
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    rel = os.path.relpath(path, REPO)
    assert first.startswith("#") and f"recipes/{recipe}.py" in first and rel in first, first
    parsed = load_recipe(recipe).parse_args(["--config", path])
    assert all(hasattr(group, "__dataclass_fields__") for group in parsed)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, os.path.join(REPO, "recipes", "configs")))
def test_no_config_deletes_a_previous_run(path):
    # --overwrite_output_dir removes the output folder, checkpoints included: a user asks for it, a config never does
    # (it would also refuse the `--resume_from_checkpoint latest` every pretraining config documents)
    parsed = load_recipe(RECIPE_OF[os.path.basename(os.path.dirname(path))]).parse_args(["--config", path])
    assert not any(getattr(group, "overwrite_output_dir", False) for group in parsed), path
