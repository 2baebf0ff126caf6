"""Checkpoints that resume exactly: `accelerator.save_state` (model, optimizer, scheduler, RNG states) plus the
training position (`TrainState`: optimizer step, epoch, micro-batch within the epoch).

A checkpoint is written under a temporary name and renamed when complete, so an interrupted save never leaves a
corrupt latest checkpoint; only the last `save_total_limit` are kept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass, field

from accelerate.utils import DistributedType

from toolkit.errors import UserError

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d+)$")


@dataclass
class TrainState:
    """Where training is; saved with every checkpoint."""

    global_step: int = 0  # optimizer steps taken
    epoch: int = 0  # current epoch (0-based)
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed by this process
    tokens_seen: int = 0  # non-padding tokens processed, all processes
    best_metric: float | None = None
    best_checkpoint: str | None = None
    log_history: list = field(default_factory=list)

    def to_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(self), f, indent=2)

    @classmethod
    def from_json(cls, path: str) -> TrainState:
        with open(path, encoding="utf-8") as f:
            return cls(**json.load(f))


def list_checkpoints(output_dir: str) -> list[str]:
    """Completed checkpoints, oldest first (temporary folders of interrupted saves are ignored)."""
    root = os.path.join(output_dir, CHECKPOINT_DIR)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        match = _NAME.match(name)
        path = os.path.join(root, name)
        if match and os.path.isfile(os.path.join(path, STATE_FILE)):
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def resolve_checkpoint(output_dir: str, resume_from_checkpoint: str | None) -> str | None:
    """`None` -> None; `latest` -> newest checkpoint in output_dir (None if there is none); a path -> that path."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    if not os.path.isfile(os.path.join(resume_from_checkpoint, STATE_FILE)):
        raise UserError(
            f"resume_from_checkpoint {resume_from_checkpoint} is not a checkpoint folder (no {STATE_FILE} inside)"
        )
    return resume_from_checkpoint


def check_output_dir(output_dir: str, resume_path: str | None, overwrite: bool) -> None:
    """Refuse to start a fresh run on top of saved checkpoints, which would silently mix or lose them."""
    if resume_path or overwrite or not list_checkpoints(output_dir):
        return
    raise UserError(
        f"output_dir {output_dir} already holds checkpoints: pass --resume_from_checkpoint latest to continue, "
        "--overwrite_output_dir to start over, or another --output_dir"
    )


def save_checkpoint(accelerator, output_dir: str, state: TrainState, save_total_limit: int | None = None) -> str:
    """Collective: every process must call it. Returns the checkpoint path."""
    root = os.path.join(output_dir, CHECKPOINT_DIR)
    final = os.path.join(root, f"step-{state.global_step:08d}")
    tmp = final + ".tmp"
    if accelerator.is_main_process:
        os.makedirs(root, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left over from an interrupted save
    accelerator.wait_for_everyone()
    # Replicated (DDP) training: rank 0 holds everything, so only rank 0 writes. Sharded (FSDP, DeepSpeed): every
    # rank writes its shard. Per-rank RNG files are not needed to resume exactly (see `training_batches`).
    sharded = accelerator.distributed_type not in (
        DistributedType.NO,
        DistributedType.MULTI_GPU,
        DistributedType.MULTI_CPU,
    )
    if sharded or accelerator.is_main_process:
        accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state.to_json(os.path.join(tmp, STATE_FILE))
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        if save_total_limit:  # keep the newest K, and the best one whatever its age
            found = list_checkpoints(output_dir)
            removable = [p for p in found if p not in (final, state.best_checkpoint)]
            for path in removable[: max(0, len(found) - save_total_limit)]:
                shutil.rmtree(path, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: str) -> TrainState:
    """Restore model, optimizer, scheduler and RNG states; return the training position."""
    accelerator.load_state(path)
    return TrainState.from_json(os.path.join(path, STATE_FILE))


def load_full_state_dict(accelerator, model, state_dict: dict, strict: bool = True) -> None:
    """Collective. Load a full (unsharded) state dict, e.g. the best or averaged weights, into a prepared model:
    plain, DDP, DeepSpeed ZeRO-1/2/3 (ZeRO-3: partitioned parameters, gathered for the load) or FSDP2 (whose
    parameters are sharded DTensors that `load_state_dict` cannot copy plain tensors into). The optimizer's own copy
    of the weights (DeepSpeed's fp32 partitions) is not updated: load after the last optimizer step."""
    unwrapped = accelerator.unwrap_model(model)
    if getattr(accelerator, "is_fsdp2", False):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        tied = getattr(unwrapped, "_tied_weights_keys", None) or {}  # copies of a shared parameter: load it once
        if any(k in state_dict for k in tied):
            state_dict, strict = {k: v for k, v in state_dict.items() if k not in tied}, False
        set_model_state_dict(
            unwrapped,
            state_dict,
            options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=strict),
        )
    elif zero3(accelerator):
        import deepspeed

        # Every parameter is partitioned: gather them all, load on every rank (the same state dict), re-partition.
        with deepspeed.zero.GatheredParameters(list(unwrapped.parameters()), modifier_rank=0):
            unwrapped.load_state_dict(state_dict, strict=strict)
    else:
        unwrapped.load_state_dict(state_dict, strict=strict)


def zero3(accelerator) -> bool:
    """Whether the model's parameters are partitioned by DeepSpeed ZeRO-3."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return accelerator.distributed_type == DistributedType.DEEPSPEED and plugin is not None and plugin.zero_stage == 3


def load_saved_model(auto_class, path: str):
    """`auto_class.from_pretrained(path)` as an ordinary, unpartitioned model, also inside a DeepSpeed ZeRO-3 run:
    there transformers would build it partitioned, a collective that a process loading it alone (e.g. the main
    process, for a sample) never completes."""
    from transformers.integrations import deepspeed as hf_deepspeed

    active = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        return auto_class.from_pretrained(path)
    finally:
        if active is not None and active() is not None:
            hf_deepspeed.set_hf_deepspeed_config(active())


def sharded_checkpoints(accelerator) -> bool:
    """Whether `save_state` writes sharded model weights (FSDP, DeepSpeed) rather than one model.safetensors."""
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
