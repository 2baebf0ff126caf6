"""Every shipped accelerate config loads with accelerate's own loader and says what it claims."""

import glob
import os

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from tests.conftest import REPO

EXPECTED = {
    "cpu.yaml": (DistributedType.NO, "no", 1, 1),
    "single_gpu.yaml": (DistributedType.NO, "bf16", 1, 1),
    "multi_gpu.yaml": (DistributedType.MULTI_GPU, "bf16", 8, 1),
    "multi_node.yaml": (DistributedType.MULTI_GPU, "bf16", 16, 2),
    "fsdp.yaml": (DistributedType.FSDP, "bf16", 8, 1),
    "deepspeed_zero2.yaml": (DistributedType.DEEPSPEED, "bf16", 8, 1),
    "deepspeed_zero3.yaml": (DistributedType.DEEPSPEED, "bf16", 8, 1),
}


def test_all_configs_are_covered():
    shipped = {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "accelerate_configs", "*.yaml"))}
    assert shipped == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads(name):
    config = load_config_from_file(os.path.join(REPO, "accelerate_configs", name))
    kind, precision, processes, machines = EXPECTED[name]
    assert config.distributed_type == kind
    assert str(config.mixed_precision) == precision
    assert config.num_processes == processes and config.num_machines == machines
    if name == "fsdp.yaml":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    if name.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(name[-6])
