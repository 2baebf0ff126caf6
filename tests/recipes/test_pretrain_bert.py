"""recipes/pretrain_bert.py end to end on a tiny slice of the embedded demo corpus: the loss goes down, a mid-epoch
resume reproduces the uninterrupted run exactly, and the saved folder loads with trust_remote_code where the toolkit
cannot be imported."""

import json
import os
import shutil
import textwrap

import pytest
import torch
from transformers import AutoTokenizer

from tests.conftest import REPO, load_recipe, run_without_toolkit


def _recipe():
    return load_recipe("pretrain_bert")


TINY = [
    "--dataset_name", "demo",
    "--dataset_config_name", "corpus",
    "--max_train_samples", "300",
    "--max_eval_samples", "40",
    "--vocab_size", "300",
    "--hidden_size", "32",
    "--num_hidden_layers", "2",
    "--num_attention_heads", "2",
    "--intermediate_size", "64",
    "--max_seq_length", "64",
    "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "16",
    "--learning_rate", "3e-3",
    "--warmup_steps", "2",
    "--max_steps", "16",
    "--logging_steps", "1",
    "--eval_steps", "8",
    "--save_steps", "8",
    "--save_total_limit", "3",
    "--seed", "3",
]  # fmt: skip


def _losses(output_dir):
    with open(os.path.join(output_dir, "log_history.json")) as f:
        history = json.load(f)
    train = {h["step"]: h["loss"] for h in history if "loss" in h}
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    return train, evals


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    recipe = _recipe()
    out = str(tmp_path_factory.mktemp("bert") / "run")
    metrics = recipe.main(*recipe.parse_args([*TINY, "--output_dir", out]))
    return recipe, out, metrics


def test_tiny_run_lowers_loss_and_saves(tiny_run):
    _, out, metrics = tiny_run
    train, evals = _losses(out)
    assert sorted(train) == list(range(1, 17))
    assert evals[0][0] == 0 and evals[-1][0] == 16
    assert evals[-1][1] < evals[0][1] - 0.2, evals  # validation MLM loss falls
    first, last = (sum(train[s] for s in steps) / 4 for steps in (range(1, 5), range(13, 17)))
    assert last < first - 0.15, train
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and metrics["eval_perplexity"] > 1.0
    for name in ("config.json", "model.safetensors", "modeling_bert.py", "configuration_bert.py", "README.md"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert os.path.isfile(os.path.join(out, "tokenizer.json")) or os.path.isfile(os.path.join(out, "vocab.txt"))


def test_initializer_range_reaches_the_new_model(tiny_run):
    """--initializer_range sets the std of a new model's weights (0.1 here, BERT's 0.02; the CPU preset uses 0.05) and is
    saved in its config."""
    recipe, out, _ = tiny_run
    tokenizer = AutoTokenizer.from_pretrained(out)
    for std in (0.02, 0.1):
        model_args, mlm_args, _, _ = recipe.parse_args([*TINY, "--initializer_range", str(std)])
        model = recipe.build_model(model_args, mlm_args, tokenizer)
        assert model.config.initializer_range == std
        weight = model.get_input_embeddings().weight  # (V, C): N(0, std) but the zeroed padding row
        assert abs(weight[1:].std().item() - std) < 0.1 * std


def test_mid_epoch_resume_is_exact(tiny_run, tmp_path):
    recipe, out, _ = tiny_run
    resumed = str(tmp_path / "resumed")
    # an interrupted run: only the step-8 checkpoint (mid-epoch: an epoch has > 8 batches) and the tokenizer
    os.makedirs(os.path.join(resumed, "checkpoints"))
    shutil.copytree(
        os.path.join(out, "checkpoints", "step-00000008"), os.path.join(resumed, "checkpoints", "step-00000008")
    )
    shutil.copytree(os.path.join(out, "tokenizer"), os.path.join(resumed, "tokenizer"))
    with open(os.path.join(resumed, "checkpoints", "step-00000008", "trainer_state.json")) as f:
        state = json.load(f)
    assert state["epoch"] == 0 and state["batch_in_epoch"] == 8
    recipe.main(*recipe.parse_args([*TINY, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]))
    full, full_evals = _losses(out)
    again, again_evals = _losses(resumed)
    assert [again[s] for s in range(9, 17)] == [full[s] for s in range(9, 17)]
    assert again_evals[-1] == full_evals[-1]
    from safetensors.torch import load_file

    a, b = load_file(os.path.join(out, "model.safetensors")), load_file(os.path.join(resumed, "model.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key


_REMOTE = textwrap.dedent(
    """
    import sys, torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    model = AutoModelForMaskedLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    batch = tok(["return the [MASK] of the list", "a"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.save({"batch": dict(batch), "logits": model(**batch).logits}, sys.argv[2])
    """
)


def test_saved_model_loads_without_toolkit(tiny_run, tmp_path):
    _, out, _ = tiny_run
    run_without_toolkit(tmp_path, _REMOTE, out, tmp_path / "out.pt")
    remote = torch.load(tmp_path / "out.pt")
    from toolkit.models.bert import ToolkitBertForMaskedLM

    model = ToolkitBertForMaskedLM.from_pretrained(out).eval()
    with torch.no_grad():
        local = model(**remote["batch"]).logits
    torch.testing.assert_close(remote["logits"], local)


@pytest.mark.distributed
def test_two_processes_match_one_process(tmp_path):
    """2 gloo processes x 4 sequences give the per-step losses of 1 process x 8 (same global batches and masks)."""
    from tests.conftest import run_launch

    common = [*TINY, "--hidden_dropout_prob", "0", "--attention_probs_dropout_prob", "0", "--max_steps", "6"]
    common += ["--eval_steps", "0", "--save_steps", "0"]
    script = os.path.join(REPO, "recipes", "pretrain_bert.py")
    one = run_launch([script, *common, "--output_dir", str(tmp_path / "one")], nproc=1)
    assert one.returncode == 0, one.stderr[-3000:]
    per_device = ["--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8"]
    two = run_launch([script, *common, *per_device, "--output_dir", str(tmp_path / "two")], nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, a_eval = _losses(str(tmp_path / "one"))
    b, b_eval = _losses(str(tmp_path / "two"))
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-4), (step, a, b)
    assert b_eval[-1][1] == pytest.approx(a_eval[-1][1], rel=1e-4)
