"""Run a recipe under accelerate's FSDP2 path on CPU processes: the test stand-in for `fsdp.yaml` on GPUs.

    accelerate launch --config_file accelerate_configs/fsdp.yaml --num_processes 2 --mixed_precision no \
        tests/helpers/fsdp_recipe_cpu.py recipes/pretrain_bert.py --config ... [recipe arguments]

`accelerate launch` turns the config into FSDP_* environment variables, but on a machine without GPUs the processes
fall back to plain gloo DDP-less runs. This wrapper builds the FSDP plugin from those variables (so the shipped
config is what is tested) and forces accelerate's state to FSDP around `Accelerator()` and every `prepare()` (which
resets the distributed type of a CPU process), then runs the recipe as `__main__`.
"""

import runpy
import sys

from accelerate import Accelerator
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables `accelerate launch` set from the config


def force_fsdp(accelerator: Accelerator) -> None:
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin


def patch(cls) -> None:
    init, prepare = cls.__init__, cls.prepare

    def patched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        force_fsdp(self)

    def patched_prepare(self, *args, **kwargs):
        force_fsdp(self)
        out = prepare(self, *args, **kwargs)
        force_fsdp(self)
        return out

    cls.__init__, cls.prepare = patched_init, patched_prepare


patch(Accelerator)
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
