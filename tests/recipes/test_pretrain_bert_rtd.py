"""recipes/pretrain_bert.py --token_objective rtd (ELECTRA) end to end on the embedded demo corpus: both losses go
down, the discriminator is scored, a mid-epoch resume is exact, the card says what was trained, and the wrong
combinations are one-line errors."""

import json
import os
import shutil

import pytest
import torch

from tests.conftest import load_recipe
from tests.recipes.test_pretrain_bert import TINY, _losses
from toolkit.errors import UserError

RTD = [*TINY, "--token_objective", "rtd", "--generator_hidden_size", "16", "--rtd_loss_weight", "20"]


@pytest.fixture(scope="module")
def rtd_run(tmp_path_factory):
    recipe = load_recipe("pretrain_bert")
    out = str(tmp_path_factory.mktemp("bert_rtd") / "run")
    metrics = recipe.main(*recipe.parse_args([*RTD, "--output_dir", out]))
    return recipe, out, metrics


def test_rtd_run_lowers_both_losses_and_saves_the_detector(rtd_run):
    _, out, metrics = rtd_run
    train, evals = _losses(out)
    assert sorted(train) == list(range(1, 17))
    first, last = (sum(train[s] for s in steps) / 4 for steps in (range(1, 5), range(13, 17)))
    assert last < first - 0.5, train  # the weighted sum of the generator's MLM and the detection loss
    assert evals[-1][1] < evals[0][1] - 0.1, evals  # the generator's validation MLM loss (a 16-wide generator)
    assert 0.5 < metrics["eval_rtd_accuracy"] <= 1.0 and 0.0 <= metrics["eval_rtd_recall"] <= 1.0
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["architectures"] == ["ToolkitBertForReplacedTokenDetection"]
    assert config["pretraining_objectives"] == ["rtd"] and config["generator_hidden_size"] == 16
    assert config["auto_map"]["AutoModelForPreTraining"] == "modeling_bert.ToolkitBertForReplacedTokenDetection"
    assert config["auto_map"]["AutoModelForSequenceClassification"].endswith("ToolkitBertForSequenceClassification")
    card = open(os.path.join(out, "README.md")).read()
    assert "replaced-token detection" in card and "rtd_accuracy" in card


def test_rtd_mid_epoch_resume_is_exact(rtd_run, tmp_path):
    recipe, out, _ = rtd_run
    resumed = str(tmp_path / "resumed")
    os.makedirs(os.path.join(resumed, "checkpoints"))
    step8 = os.path.join("checkpoints", "step-00000008")
    shutil.copytree(os.path.join(out, step8), os.path.join(resumed, step8))
    shutil.copytree(os.path.join(out, "tokenizer"), os.path.join(resumed, "tokenizer"))
    recipe.main(*recipe.parse_args([*RTD, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]))
    full, full_evals = _losses(out)
    again, again_evals = _losses(resumed)
    assert [again[s] for s in range(9, 17)] == [full[s] for s in range(9, 17)]  # generator samples included
    assert again_evals[-1] == full_evals[-1]
    from safetensors.torch import load_file

    a, b = load_file(os.path.join(out, "model.safetensors")), load_file(os.path.join(resumed, "model.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("generator.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_wrong_objectives_are_one_line_errors(tmp_path, capsys):
    recipe = load_recipe("pretrain_bert")
    out = ["--output_dir", str(tmp_path / "run")]
    with pytest.raises(UserError, match="token_objective rtd and sentence_objective nsp/sop are exclusive"):
        recipe.parse_args([*TINY, "--token_objective", "rtd", "--sentence_objective", "nsp", *out])
    with pytest.raises(SystemExit) as exit_info:
        recipe.parse_args([*TINY, "--token_objective", "electra", *out])
    assert exit_info.value.code == 2
    assert "invalid choice: 'electra' (choose from 'mlm', 'rtd')" in capsys.readouterr().err
    with pytest.raises(
        UserError, match="generator_hidden_size 200 is not a multiple of generator_num_attention_heads 3"
    ):
        recipe.parse_args([*TINY, "--hidden_size", "768", "--num_attention_heads", "12", "--generator_hidden_size",
                           "200", *out])  # fmt: skip
    config = tmp_path / "bad.yaml"
    config.write_text("token_objective: electra\n")
    with pytest.raises(UserError, match="token_objective in config file .* must be one of"):
        recipe.parse_args(["--config", str(config), *out])
    assert not os.path.exists(tmp_path / "run")
