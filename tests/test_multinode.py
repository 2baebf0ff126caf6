"""Two "nodes" on this machine: two `accelerate launch` commands with --num_machines 2 (machine ranks 0 and 1,
main process 127.0.0.1, one CPU process each, gloo) run the BERT recipe's tiny settings. Both ranks see the same
loss, the run equals a single-process run with the same global batch, and only rank 0 writes checkpoints and the
final model (rank 1 runs in another working directory with the same relative --output_dir, like a node without a
shared filesystem)."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, free_port, run_launch
from tests.recipes.test_pretrain_bert import TINY

SCRIPT = os.path.join(REPO, "recipes", "pretrain_bert.py")
ARGS = [*TINY, "--hidden_dropout_prob", "0", "--attention_probs_dropout_prob", "0", "--max_steps", "4",
        "--eval_steps", "0", "--save_steps", "2", "--logging_steps", "1"]  # fmt: skip


def _node(rank: int, port: int, cwd: str, tokenizer: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
           "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
           "--main_process_port", str(port), "--rdzv_backend", "static", "--same_network",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           SCRIPT, *ARGS, "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
           "--output_dir", "run", "--tokenizer_name", tokenizer]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOOLKIT_LOG_ALL_RANKS": "1", "PYTHONPATH": REPO}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _step_losses(stdout: str, rank: int | None = None) -> dict[int, float]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"step"')]
    return {r["step"]: r["loss"] for r in rows if "loss" in r and (rank is None or r.get("rank") == rank)}


@pytest.mark.distributed
def test_two_nodes_on_localhost(tmp_path):
    # the single-process reference run also trains the WordPiece tokenizer both "nodes" then load (a node without
    # a shared filesystem cannot read what rank 0 trains into its output_dir)
    single = run_launch([SCRIPT, *ARGS, "--output_dir", str(tmp_path / "single")], nproc=1)
    assert single.returncode == 0, single.stderr[-3000:]
    with open(tmp_path / "single" / "log_history.json") as f:
        reference = {h["step"]: h["loss"] for h in json.load(f) if "loss" in h}
    tokenizer = str(tmp_path / "single")

    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    node0.mkdir()
    node1.mkdir()
    port = free_port()
    procs = [_node(0, port, str(node0), tokenizer), _node(1, port, str(node1), tokenizer)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    stdout = outs[0][0] + outs[1][0]
    rank0, rank1 = _step_losses(stdout, 0), _step_losses(stdout, 1)
    assert sorted(rank0) == [1, 2, 3, 4] and rank0 == rank1  # both ranks see the same (all-reduced) loss
    for step, loss in rank0.items():
        assert loss == pytest.approx(reference[step], rel=1e-4, abs=1e-4), (step, rank0, reference)

    written0 = {os.path.relpath(os.path.join(d, f), node0) for d, _, fs in os.walk(node0) for f in fs}
    assert "run/model.safetensors" in written0 and "run/config.json" in written0
    assert any(p.startswith("run/checkpoints/step-00000004/") for p in written0)
    written1 = [os.path.join(d, f) for d, _, fs in os.walk(node1) for f in fs]
    assert written1 == [], f"rank 1 wrote {written1}"
