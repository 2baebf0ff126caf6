"""FSDP2 wrapping of every model family, on CPU: accelerate's FSDP2 preparation forced on in gloo processes
(tests/helpers/fsdp_cpu.py; two ranks under torchrun, each holding half of every parameter). Guards what failed on
the GPU on 2026-11-27 (benchmarks/RESULTS.md): BERT's embeddings sharded twice, the Transformer's shared embedding
split across FSDP groups, ELMo's fp32 activations meeting bf16 weights, and loading the best weights into sharded
parameters."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, free_port

FAMILIES = ["bert", "transformer", "rnn_seq2seq", "bilstm", "elmo"]


def run_helper(family: str, mixed_precision: str, nproc: int = 1) -> list[str]:
    """The last output line of every rank."""
    port = str(free_port())
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", port]
    proc = subprocess.run(
        [*(launcher if nproc > 1 else [sys.executable]), "tests/helpers/fsdp_cpu.py", family, port, mixed_precision],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = re.findall(r"ok trained \S+ initial \S+ reloaded [0-9.]+", proc.stdout)  # ranks' lines may interleave
    assert len(lines) == nproc, proc.stdout[-3000:]
    return lines


# bert and elmo also run at recipe level under fsdp.yaml in `make test` (tests/test_sharded_cpu.py)
TWO_RANKS = [pytest.param(f, marks=pytest.mark.slow) if f in ("bert", "elmo") else f for f in FAMILIES]


@pytest.mark.distributed
@pytest.mark.parametrize("family", TWO_RANKS)
def test_fsdp2_two_ranks_train_and_reload_full_weights(family):
    # Two gloo processes, each holding half of every parameter. fp32: loading the initial full state dict back
    # (read on rank 0, broadcast to the shards) must give the initial loss exactly, on both ranks.
    ranks = [line.split() for line in run_helper(family, "no", nproc=2)]
    assert ranks[0] == ranks[1]  # same batch on both ranks: same loss, same reloaded weights
    _, _, trained, _, initial, _, reloaded = ranks[0]
    assert float(reloaded) == pytest.approx(float(initial), abs=1e-5)
    assert float(trained) != float(initial)


@pytest.mark.distributed
@pytest.mark.parametrize("family", ["transformer", "elmo"])
def test_fsdp2_bf16_weights(family):
    # bf16 mixed precision: FSDP2 computes with bf16 weights and no autocast.
    assert run_helper(family, "bf16")[0].startswith("ok")
