"""The recipes under the shipped sharded accelerate configs, with two CPU processes that each hold real shards:

- DeepSpeed ZeRO-2 / ZeRO-3 (`accelerate_configs/deepspeed_zero{2,3}.yaml`): DeepSpeed's CPU accelerator runs over
  gloo, so these are DeepSpeed's own code paths, ZeRO-3 partitioning the parameters themselves.
- FSDP2 (`accelerate_configs/fsdp.yaml`): accelerate ignores FSDP on CPU, so tests/helpers/fsdp_recipe_cpu.py forces
  its FSDP2 path with the plugin the config describes.

Each run trains, resumes from its sharded mid-run checkpoint to the same losses, and its gathered final model reloads
with `from_pretrained` with every weight present. The BERT recipe logs the same losses and saves the same weights
under DDP, ZeRO-2, ZeRO-3 and FSDP2. In fp32: mixed precision is what the GPU runs check (benchmarks/gpu_check.sh).
"""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import REPO, free_port

QUICK = ["--max_steps", "4", "--save_steps", "2", "--eval_steps", "4", "--logging_steps", "1"]
RECIPES = {  # recipe: its quickstart config and a smaller corpus, so that a run takes seconds
    "pretrain_bert": ["recipes/configs/bert/quickstart.yaml", "--max_train_samples", "400", "--max_eval_samples", "40"],
    "pretrain_elmo": ["recipes/configs/elmo/quickstart.yaml", "--max_train_samples", "300", "--max_eval_samples", "30",
                      "--vocab_size", "2000", "--min_frequency", "1", "--adaptive_cutoffs", "200", "600",
                      "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "4"],
    "finetune_classification": ["recipes/configs/classification/quickstart.yaml", "--max_eval_samples", "40"],
    "finetune_seq2seq": ["recipes/configs/summarization/quickstart.yaml", "--max_train_samples", "200",
                         "--max_eval_samples", "8", "--max_tokens", "1024"],
}  # fmt: skip
LAUNCH = {
    "ddp": ["--multi_gpu", "--num_processes", "2", "--dynamo_backend", "no"],
    "zero2": ["--config_file", "accelerate_configs/deepspeed_zero2.yaml", "--num_processes", "2"],
    "zero3": ["--config_file", "accelerate_configs/deepspeed_zero3.yaml", "--num_processes", "2"],
    "fsdp": ["--config_file", "accelerate_configs/fsdp.yaml", "--num_processes", "2"],
}


def has_deepspeed() -> bool:
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        return False
    return True


def needs(how: str):
    return pytest.mark.skipif(how.startswith("zero") and not has_deepspeed(), reason="DeepSpeed not installed")


def launch(how: str, recipe: str, output_dir, *extra: str) -> dict[int, float]:
    """Run `recipe` under `accelerate launch` with two CPU processes; returns rank 0's logged loss per step."""
    config, *options = RECIPES[recipe]
    script = ["tests/helpers/fsdp_recipe_cpu.py"] if how == "fsdp" else []
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *LAUNCH[how], "--mixed_precision", "no",
           "--main_process_port", str(free_port()), *script, f"recipes/{recipe}.py", "--config", config, *options,
           *QUICK, "--output_dir", str(output_dir), *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"step"')]
    return {r["step"]: r["loss"] for r in rows if "loss" in r and r.get("rank", 0) == 0}


def check_sharded_checkpoint(how: str, checkpoint) -> None:
    names = set(os.listdir(checkpoint))
    if how == "fsdp":  # one file per rank
        shards = sorted(n for n in os.listdir(checkpoint / "pytorch_model_fsdp_0") if n.endswith(".distcp"))
        assert shards == ["__0_0.distcp", "__1_0.distcp"], names
    elif how.startswith("zero"):
        assert "pytorch_model" in names, names  # DeepSpeed's own checkpoint folder, partitioned per rank


def check_resume(how: str, recipe: str, run, losses: dict[int, float], *extra: str) -> None:
    """Resume from the sharded step-2 checkpoint: the same step-3 and step-4 losses."""
    checkpoint = run / "checkpoints" / "step-00000002"
    check_sharded_checkpoint(how, checkpoint)
    resumed = launch(how, recipe, run, *extra, "--resume_from_checkpoint", str(checkpoint))
    assert resumed == {3: losses[3], 4: losses[4]}, (losses, resumed)


def reload_strict(output_dir):
    """`from_pretrained` of the class the run saved; fails on any missing, unexpected or mis-shaped weight."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        from reload_check import main as reload_check
    finally:
        sys.path.pop(0)
    reload_check(str(output_dir))
    from safetensors.torch import load_file

    return load_file(os.path.join(output_dir, "model.safetensors"))


# In `make test`: one sharded launch per recipe, where that model family broke before (benchmarks/RESULTS.md, GPU);
# pretrain_bert runs under all of them in test_sharded_bert_run_trains_saves_and_resumes_as_ddp. The rest: `make test-slow`.
FAST = {("pretrain_elmo", "fsdp"), ("finetune_classification", "zero3")}  # the Transformer: tests/test_fsdp_cpu.py
CASES = [
    pytest.param(recipe, how, marks=[needs(how)] + ([] if (recipe, how) in FAST else [pytest.mark.slow]))
    for recipe in sorted(RECIPES)
    if recipe != "pretrain_bert"
    for how in ("fsdp", "zero2", "zero3")
]


@pytest.mark.distributed
@pytest.mark.parametrize("recipe,how", CASES)
def test_sharded_run_trains_resumes_and_reloads(recipe, how, tmp_path):
    run = tmp_path / "run"
    losses = launch(how, recipe, run)
    assert sorted(losses) == [1, 2, 3, 4], losses
    reload_strict(run)
    check_resume(how, recipe, run, losses)


@pytest.fixture(scope="module")
def ddp_bert(tmp_path_factory):
    """The BERT recipe under DDP: its losses, saved weights, and the tokenizer every sharded run then reuses."""
    out = tmp_path_factory.mktemp("ddp_bert")
    losses = launch("ddp", "pretrain_bert", out)
    return losses, reload_strict(out), ["--tokenizer_name", str(out)]


@pytest.mark.distributed
@pytest.mark.parametrize(
    "how",
    [
        pytest.param("zero2", marks=[pytest.mark.slow, needs("zero2")]),
        pytest.param("zero3", marks=needs("zero3")),
        "fsdp",
    ],
)
def test_sharded_bert_run_trains_saves_and_resumes_as_ddp(how, ddp_bert, tmp_path):
    reference_losses, reference, tokenizer = ddp_bert
    run = tmp_path / how
    losses = launch(how, "pretrain_bert", run, *tokenizer)
    assert losses == pytest.approx(reference_losses, rel=1e-5)
    weights = reload_strict(run)
    assert weights.keys() == reference.keys()
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-4, atol=1e-5, msg=name)
    check_resume(how, "pretrain_bert", run, losses, *tokenizer)


def _plugin(**kwargs):
    from accelerate.utils import DeepSpeedPlugin

    return DeepSpeedPlugin(zero_stage=2, **kwargs)


@pytest.mark.skipif(not has_deepspeed(), reason="DeepSpeed not installed")
def test_deepspeed_config_follows_the_recipe_arguments():
    from toolkit.errors import UserError
    from toolkit.training.loop import configure_deepspeed

    args = SimpleNamespace(gradient_accumulation_steps=4, max_grad_norm=5.0, per_device_train_batch_size=16)
    accelerator = SimpleNamespace(gradient_accumulation_steps=4)
    plugin = _plugin()  # the shipped configs: clipping and accumulation left to the recipe
    configure_deepspeed(plugin, accelerator, args)
    assert plugin.deepspeed_config["gradient_clipping"] == 5.0
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 16
    with pytest.raises(UserError, match="gradient_clipping=1.0 but --max_grad_norm is 5.0"):
        configure_deepspeed(_plugin(gradient_clipping=1.0), accelerator, args)
    with pytest.raises(UserError, match="gradient_accumulation_steps=1 but --gradient_accumulation_steps is 4"):
        configure_deepspeed(_plugin(), SimpleNamespace(gradient_accumulation_steps=1), args)
