"""recipes/slurm/multi_node.sbatch under fake `srun` / `scontrol` / `scancel` / `accelerate` commands: the SIGUSR1 that
SLURM's `--signal` sends before the time limit makes the trainer checkpoint and the job requeue itself, and the
requeued job (SLURM_RESTART_COUNT=1) resumes from the latest checkpoint and finishes."""

import json
import os
import signal
import stat
import subprocess
import sys

from tests.conftest import REPO
from tests.test_preemption import ARGS
from toolkit.training import list_checkpoints

SBATCH = os.path.join(REPO, "recipes", "slurm", "multi_node.sbatch")
SCRIPT = os.path.join("tests", "helpers", "tiny_train.py")
FAKES = {
    "srun": 'shift; exec "$@"',  # drop --kill-on-bad-exit, run the task here
    "scontrol": 'if [ "$1" = show ]; then echo localhost; else echo "$@" >> "$FAKE_LOG"; fi',
    "scancel": "exit 1",  # no SLURM here: the script falls back to signalling srun's process itself
    # `accelerate launch ... --rdzv_backend static RECIPE ARGS` -> `python RECIPE ARGS`
    "accelerate": f'while [ "$1" != static ]; do shift; done; shift; exec {sys.executable} "$@"',
}


def _fake_bin(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, body in FAKES.items():
        path = folder / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return folder


def test_signal_before_time_limit_checkpoints_requeues_and_the_requeued_job_resumes(tmp_path):
    out = str(tmp_path / "run")
    env = {**os.environ, "PATH": f"{_fake_bin(tmp_path)}:{os.environ['PATH']}", "FAKE_LOG": str(tmp_path / "log")}
    env.update(SLURM_JOB_NODELIST="node1", SLURM_NNODES="1", SLURM_GPUS_PER_NODE="1", SLURM_JOB_ID="7")
    env.update(SLURM_NODEID="0", OMP_NUM_THREADS="1", TOOLKIT_TEST_STEP_DELAY="0.15")
    cmd = ["bash", SBATCH, SCRIPT, "--output_dir", out, *ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    for line in proc.stdout:
        if line.startswith('{"step": 3'):
            proc.send_signal(signal.SIGUSR1)  # what `#SBATCH --signal=B:USR1@300` does
            break
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert "requeueing job 7" in stdout and "stopped by SIGTERM after step" in stderr
    with open(tmp_path / "log") as f:
        assert f.read().split() == ["requeue", "7"]
    (checkpoint,) = list_checkpoints(out)
    stopped = int(os.path.basename(checkpoint).split("-")[1])

    env["SLURM_RESTART_COUNT"] = "1"  # the requeued job: same command line
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**env, "TOOLKIT_TEST_STEP_DELAY": "0"})
    assert again.returncode == 0, again.stderr[-2000:]
    steps = [json.loads(x)["step"] for x in again.stdout.splitlines() if x.startswith('{"step"')]
    assert "resuming from the latest checkpoint" in again.stdout and steps[0] == stopped + 1 and steps[-1] == 24
