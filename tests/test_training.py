"""Shared training layer: exact mid-epoch resume, multi-process equivalence, checkpoint hygiene, schedules."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, run_launch
from toolkit.training import TrainingArguments, list_checkpoints, resolve_checkpoint
from toolkit.training.checkpoint import TrainState
from toolkit.training.optim import lr_lambda, param_groups

SCRIPT = os.path.join(REPO, "tests", "helpers", "tiny_train.py")
COMMON = ["--per_device_train_batch_size", "8", "--num_train_epochs", "3", "--learning_rate", "0.01"]


def run_tiny(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return parse(out.stdout)


def parse(stdout):
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {r["step"]: r["loss"] for r in lines if "step" in r}, next(r for r in lines if "final_weight_sum" in r)


def test_mid_epoch_resume_reproduces_uninterrupted_losses(tmp_path):
    # 64 examples / batch 8 = 8 steps per epoch; stop at step 11 (mid epoch 2), last checkpoint at step 10.
    args = [*COMMON, "--dropout", "0.1", "--save_steps", "5"]
    full, full_final = run_tiny(["--output_dir", str(tmp_path / "full"), *args])
    run_tiny(["--output_dir", str(tmp_path / "cut"), *args, "--stop_after_steps", "11"])
    resumed, resumed_final = run_tiny(
        ["--output_dir", str(tmp_path / "cut"), *args, "--resume_from_checkpoint", "latest"]
    )
    assert min(resumed) == 11 and max(resumed) == 24
    for step, loss in resumed.items():
        assert loss == full[step], f"step {step}: resumed {loss} != uninterrupted {full[step]}"
    assert resumed_final == full_final


def test_resume_with_gradient_accumulation(tmp_path):
    args = [*COMMON, "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2", "--save_steps", "3"]
    full, _ = run_tiny(["--output_dir", str(tmp_path / "full"), *args])
    run_tiny(["--output_dir", str(tmp_path / "cut"), *args, "--stop_after_steps", "7"])
    resumed, _ = run_tiny(["--output_dir", str(tmp_path / "cut"), *args, "--resume_from_checkpoint", "latest"])
    assert min(resumed) == 7
    assert all(resumed[s] == full[s] for s in resumed)


@pytest.mark.distributed
def test_two_processes_match_one_process(tmp_path):
    args = ["--num_train_epochs", "2", "--learning_rate", "0.01", "--save_steps", "4"]
    single, single_final = run_tiny(
        ["--output_dir", str(tmp_path / "one"), *args, "--per_device_train_batch_size", "8"]
    )
    out = run_launch(
        [SCRIPT, "--output_dir", str(tmp_path / "two"), *args, "--per_device_train_batch_size", "4"], nproc=2
    )
    assert out.returncode == 0, out.stderr[-3000:]
    double, double_final = parse(out.stdout)
    assert double.keys() == single.keys()
    for step in single:
        assert double[step] == pytest.approx(single[step], rel=1e-5)
    assert double_final["final_weight_sum"] == pytest.approx(single_final["final_weight_sum"], rel=1e-5)
    # replicated training: rank 0 alone writes the checkpoint
    last = list_checkpoints(str(tmp_path / "two"))[-1]
    assert "random_states_1.pkl" not in os.listdir(last) and "model.safetensors" in os.listdir(last)


def test_interrupted_save_is_ignored_and_old_checkpoints_pruned(tmp_path):
    run_tiny(["--output_dir", str(tmp_path), *COMMON, "--save_steps", "4", "--save_total_limit", "2"])
    found = list_checkpoints(str(tmp_path))
    assert [os.path.basename(p) for p in found] == ["step-00000020", "step-00000024"]
    broken = tmp_path / "checkpoints" / "step-00000099.tmp"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"partial")
    assert resolve_checkpoint(str(tmp_path), "latest") == found[-1]


def test_fresh_run_refuses_to_overwrite_checkpoints(tmp_path):
    run_tiny(["--output_dir", str(tmp_path), *COMMON, "--save_steps", "12"])
    out = subprocess.run(
        [sys.executable, SCRIPT, "--output_dir", str(tmp_path), *COMMON], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 2
    assert "already holds checkpoints" in out.stderr and "--resume_from_checkpoint latest" in out.stderr
    assert len(list_checkpoints(str(tmp_path))) == 2  # nothing saved was lost


def test_resume_from_missing_path_is_a_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, SCRIPT, "--output_dir", str(tmp_path), "--resume_from_checkpoint", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 2 and "is not a checkpoint folder" in out.stderr


def test_train_state_round_trip(tmp_path):
    state = TrainState(global_step=3, epoch=1, batch_in_epoch=5, log_history=[{"loss": 1.0}])
    state.to_json(tmp_path / "s.json")
    assert TrainState.from_json(tmp_path / "s.json") == state


def test_schedules():
    linear = lr_lambda("linear", 10, 110)
    assert linear(0) == pytest.approx(1 / 11) and linear(10) == pytest.approx(1.0) and linear(110) == 0.0
    cosine = lr_lambda("cosine", 0, 100)
    assert cosine(0) == pytest.approx(1.0) and cosine(50) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0)
    inv = lr_lambda("inverse_sqrt", 100, 1000)
    assert inv(100) == pytest.approx(1.0) and inv(400) == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["linear", "cosine", "constant_with_warmup"])
def test_schedules_match_transformers_after_warmup(name):
    """The step schedules are `transformers.get_scheduler`'s after warmup, kept by hand on purpose for warmup only:
    ours runs step s at (s + 1) / (warmup + 1) of the peak, transformers' at s / warmup, whose first optimizer step
    has learning rate 0 (a wasted step, which short and time-budgeted runs feel). The budget schedule
    (toolkit/training/optim.py) shares these multipliers, so one formula serves both."""
    from transformers import get_scheduler

    warmup, total = 10, 110
    model = torch.nn.Linear(1, 1)
    hf = get_scheduler(name, torch.optim.SGD(model.parameters(), lr=1.0), warmup, total)
    ours = lr_lambda(name, warmup, total)
    for step in range(total):
        expected = hf.get_last_lr()[0]
        if step < warmup:
            assert expected == pytest.approx(step / warmup) and ours(step) == pytest.approx((step + 1) / (warmup + 1))
        else:
            assert ours(step) == pytest.approx(expected, abs=1e-12), step
        hf.optimizer.step()
        hf.step()


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


def test_push_to_hub_needs_a_model_id():
    with pytest.raises(ValueError, match="hub_model_id"):
        TrainingArguments(push_to_hub=True)


def test_progress_logger_counts_micro_batches_after_the_last_logging_step():
    # A run cut by its time budget stops between logging steps; close() must still count those batches.
    from accelerate import Accelerator

    from toolkit.training import ProgressLogger, load_full_state_dict

    accelerator = Accelerator(cpu=True)
    state = TrainState()
    progress = ProgressLogger(accelerator, total_steps=100, state=state, logging_steps=50)
    for step, loss in enumerate([2.0, 4.0, 6.0], start=1):
        progress.update(torch.tensor(loss), n_tokens=10)
        state.global_step = step
        progress.step(1e-3)
    assert state.tokens_seen == 0 and progress.last_loss is None  # nothing logged yet
    progress.close()
    assert state.tokens_seen == 30 and progress.last_loss == pytest.approx(4.0)

    model = accelerator.prepare(torch.nn.Linear(2, 2))
    weights = {"weight": torch.ones(2, 2), "bias": torch.zeros(2)}
    load_full_state_dict(accelerator, model, weights)
    assert torch.equal(model.weight.detach(), weights["weight"])
