"""FSDP2 wrapping of every model family, on CPU: accelerate's FSDP2 preparation forced on in one gloo process
(tests/helpers/fsdp_cpu.py). Guards what failed on the GPU on 2026-11-27 (benchmarks/RESULTS.md): BERT's embeddings
sharded twice, the Transformer's shared embedding split across FSDP groups, ELMo's fp32 activations meeting bf16
weights, and loading the best weights into sharded parameters."""

import subprocess
import sys

import pytest

from tests.conftest import REPO, free_port

FAMILIES = ["bert", "transformer", "rnn_seq2seq", "bilstm", "elmo"]


def run_helper(family: str, mixed_precision: str) -> str:
    proc = subprocess.run(
        [sys.executable, "tests/helpers/fsdp_cpu.py", family, str(free_port()), mixed_precision],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.distributed
@pytest.mark.parametrize("family", FAMILIES)
def test_fsdp2_trains_and_reloads_full_weights(family):
    # fp32: loading the initial full state dict back must give the initial loss exactly.
    _, _, trained, _, initial, _, reloaded = run_helper(family, "no").split()
    assert float(reloaded) == pytest.approx(float(initial), abs=1e-5)
    assert float(trained) != float(initial)


@pytest.mark.distributed
@pytest.mark.parametrize("family", ["transformer", "elmo"])
def test_fsdp2_bf16_weights(family):
    # bf16 mixed precision: FSDP2 computes with bf16 weights and no autocast.
    assert run_helper(family, "bf16").startswith("ok")
