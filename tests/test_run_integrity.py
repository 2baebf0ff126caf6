"""Runs never mix and checkpoints never run code: options changed on resume are refused (or applied for real with
--allow_changed_options), --overwrite_output_dir clears the previous run so `latest` cannot pick its checkpoints,
leftover `.tmp` saves are removed, and a crafted pickle in a checkpoint is never executed."""

import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_training import SCRIPT, run_tiny
from toolkit.training import list_checkpoints

ARGS = ["--per_device_train_batch_size", "8", "--num_train_epochs", "2", "--learning_rate", "0.01"]
ARGS += ["--save_steps", "5", "--warmup_steps", "2"]  # 16 steps, checkpoints at 5, 10, 15


def run(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, cwd=REPO)


def lrs(stdout):
    return {
        r["step"]: r["lr"] for r in map(json.loads, filter(lambda x: x.startswith('{"step"'), stdout.splitlines()))
    }


def one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory):
    """A run of 16 steps interrupted after step 12 (last checkpoint: step 10)."""
    out = tmp_path_factory.mktemp("cut") / "run"
    run_tiny(["--output_dir", str(out), *ARGS, "--stop_after_steps", "12"])
    assert os.path.basename(list_checkpoints(str(out))[-1]) == "step-00000010"
    return out


def copy(cut_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(cut_run, dst)
    return str(dst)


def test_changed_options_are_refused_in_one_line(cut_run, tmp_path):
    out = copy(cut_run, tmp_path)
    proc = run(
        [
            "--output_dir",
            out,
            *ARGS,
            "--learning_rate",
            "0.1",
            "--max_steps",
            "20",
            "--resume_from_checkpoint",
            "latest",
        ]
    )
    line = one_error_line(proc)
    assert "learning_rate: 0.01 -> 0.1" in line and "max_steps: -1 -> 20" in line and "--allow_changed_options" in line
    # safe options (cadence, output) change freely
    proc = run(
        [
            "--output_dir",
            out,
            *ARGS,
            "--logging_steps",
            "7",
            "--save_total_limit",
            "5",
            "--resume_from_checkpoint",
            "latest",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_batch_geometry_cannot_change_even_with_the_override(cut_run, tmp_path):
    out = copy(cut_run, tmp_path)
    proc = run(
        ["--output_dir", out, *ARGS, "--per_device_train_batch_size", "4", "--allow_changed_options",
         "--resume_from_checkpoint", "latest"]
    )  # fmt: skip
    line = one_error_line(proc)
    assert "per_device_train_batch_size: 8 -> 4" in line and "cannot change on resume" in line


def test_allowed_learning_rate_change_takes_effect(cut_run, tmp_path):
    out = copy(cut_run, tmp_path)
    reference = run(["--output_dir", str(tmp_path / "ref"), *ARGS, "--learning_rate", "0.1"])
    assert reference.returncode == 0
    proc = run(
        ["--output_dir", out, *ARGS, "--learning_rate", "0.1", "--allow_changed_options",
         "--resume_from_checkpoint", "latest"]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "learning_rate: 0.01 -> 0.1" in proc.stdout  # said once, then applied
    resumed, expected = lrs(proc.stdout), lrs(reference.stdout)
    assert min(resumed) == 11 and resumed == {s: expected[s] for s in resumed}  # the lr=0.1 schedule from step 11
    with open(os.path.join(out, "checkpoints", "step-00000015", "trainer_state.json")) as f:
        assert json.load(f)["run_options"]["learning_rate"] == 0.1  # what ran is what is recorded


def test_overwrite_removes_the_previous_run_and_latest_is_this_run(tmp_path):
    out = str(tmp_path / "run")
    run_tiny(["--output_dir", out, *ARGS, "--seed", "1"])  # checkpoints 5, 10, 15 (limit 2: 10, 15)
    proc = run(["--output_dir", out, *ARGS, "--seed", "2", "--num_train_epochs", "1", "--overwrite_output_dir"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"--overwrite_output_dir: removed the previous run in {out}" in proc.stderr
    assert [os.path.basename(p) for p in list_checkpoints(out)] == ["step-00000005"]  # only this run's
    # resuming the new run picks its own checkpoint (seed 2), never the old run's step 15
    proc = run(
        ["--output_dir", out, *ARGS, "--seed", "2", "--num_train_epochs", "1", "--resume_from_checkpoint", "latest"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert min(lrs(proc.stdout)) == 6


def test_overwrite_and_resume_exclude_each_other(cut_run, tmp_path):
    out = copy(cut_run, tmp_path)
    line = one_error_line(
        run(["--output_dir", out, *ARGS, "--overwrite_output_dir", "--resume_from_checkpoint", "latest"])
    )
    assert "--overwrite_output_dir" in line and "step-00000010" in line
    assert len(list_checkpoints(out)) == 2  # nothing deleted


def test_leftover_tmp_save_is_removed_at_start(cut_run, tmp_path):
    out = copy(cut_run, tmp_path)
    stale = os.path.join(out, "checkpoints", "step-00000011.tmp")
    os.makedirs(stale)
    proc = run(["--output_dir", out, *ARGS, "--resume_from_checkpoint", "latest"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not os.path.exists(stale) and "step-00000011.tmp" in proc.stderr


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling it creates the marker file


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "optimizer.bin", "random_states_0.pkl", "legacy"])
def test_crafted_pickle_in_a_checkpoint_is_not_executed(cut_run, tmp_path, name):
    out = copy(cut_run, tmp_path)
    ckpt = list_checkpoints(out)[-1]
    marker = tmp_path / "pwned"
    if name == "legacy":  # a checkpoint of the older format: scheduler state in accelerate's pickle
        os.remove(os.path.join(ckpt, "extra_state_0.json"))
        name = "custom_checkpoint_0.pkl"
    with open(os.path.join(ckpt, name), "wb") as f:
        pickle.dump(_Payload(str(marker)), f)
    proc = run(["--output_dir", out, *ARGS, "--resume_from_checkpoint", "latest"])
    assert not marker.exists(), "loading the checkpoint ran code"
    assert "Traceback" not in proc.stderr
    if proc.returncode:  # refused: one line naming the checkpoint
        assert "not loaded, since unpickling it could run code" in one_error_line(proc)


def test_deepspeed_files_are_checked_with_the_restricted_unpickler(tmp_path):
    """DeepSpeed's own loader unpickles without restriction: its files are verified first (DeepSpeed classes,
    tensors and plain values pass; anything else is refused before DeepSpeed sees it)."""
    import collections

    import torch

    pytest.importorskip("deepspeed")
    from deepspeed.runtime.zero.config import ZeroStageEnum

    from toolkit.errors import UserError
    from toolkit.training.checkpoint import verify_deepspeed_files

    state = {"module": collections.OrderedDict(w=torch.ones(2)), "shape": torch.Size([2]), "stage": ZeroStageEnum(2)}
    torch.save(state, tmp_path / "mp_rank_00_model_states.pt")
    verify_deepspeed_files(str(tmp_path))
    marker = tmp_path / "pwned"
    torch.save({"x": _Payload(str(marker))}, tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    with pytest.raises(UserError, match="open, which is not a tensor"):
        verify_deepspeed_files(str(tmp_path))
    assert not marker.exists()


def test_fsdp_checkpoint_metadata_is_checked_before_torch_unpickles_it(tmp_path):
    """torch.distributed.checkpoint reads `.metadata` with plain pickle: real metadata passes the restricted
    unpickler, a crafted one is refused before anything in it runs."""
    import torch
    import torch.distributed.checkpoint as dcp

    from toolkit.errors import UserError
    from toolkit.training.checkpoint import verify_dcp_metadata

    real = tmp_path / "pytorch_model_fsdp_0"
    dcp.save({"w": torch.ones(3, 2), "b": torch.zeros(2, dtype=torch.bfloat16)}, checkpoint_id=str(real))
    assert (real / ".metadata").is_file()
    verify_dcp_metadata(str(tmp_path))
    marker = tmp_path / "pwned"
    with open(real / ".metadata", "wb") as f:
        pickle.dump(_Payload(str(marker)), f)
    with pytest.raises(UserError, match="not plain distributed-checkpoint metadata"):
        verify_dcp_metadata(str(tmp_path))
    assert not marker.exists()
