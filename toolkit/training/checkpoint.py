"""Checkpoints that resume exactly: `accelerator.save_state` (model, optimizer, RNG states), the scheduler and other
registered state, plus the training position (`TrainState`: optimizer step, epoch, micro-batch within the epoch).

A checkpoint is written under a temporary name and renamed when complete, so an interrupted save never leaves a
corrupt latest checkpoint; only the last `save_total_limit` are kept; leftovers of interrupted saves are removed when
a run starts.

Loading a checkpoint never runs code: the scheduler and registered state are JSON plus safetensors (not accelerate's
pickled `custom_checkpoint_*.pkl`), accelerate loads model and optimizer with `torch.load(weights_only=True)`, and a
file the restricted unpickler refuses stops the run with one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import shutil
import sys
import warnings
from dataclasses import dataclass, field

import torch
from accelerate.utils import DistributedType

from toolkit.errors import UserError

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"
EXTRA_STATE = "extra_state_{rank}"  # + .json (plain values) and .safetensors (tensors), one pair per process
_NAME = re.compile(r"^step-(\d+)$")
# files a previous run leaves in output_dir besides checkpoints/; --overwrite_output_dir removes them
RUN_MARKERS = ("run_config.json", "all_results.json", "log_history.json", "trainer_state.json")


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
    pending_log: dict | None = None  # logging window cut by a stop signal (see ProgressLogger.pending_window)
    run_options: dict = field(default_factory=dict)  # the options that define the run (see run_options.py)

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
    """Refuse to start a fresh run on top of saved checkpoints, which would silently mix or lose them; with
    `overwrite`, remove the previous run first (one printed line). Leftover `step-N.tmp` folders of interrupted saves
    are removed in any case. Only the global main process deletes (the others see the result after the first
    collective)."""
    main = int(os.environ.get("RANK", "0")) == 0
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UserError(f"output_dir {output_dir} exists and is not a folder")
    if resume_path and overwrite:
        raise UserError(
            f"--overwrite_output_dir would delete the checkpoint to resume from ({resume_path}): pass one of "
            "--overwrite_output_dir and --resume_from_checkpoint"
        )
    previous = list_checkpoints(output_dir) or any(
        os.path.exists(os.path.join(output_dir, name)) for name in RUN_MARKERS
    )
    if overwrite and previous:
        if main:
            shutil.rmtree(output_dir)
            print(f"--overwrite_output_dir: removed the previous run in {output_dir}", file=sys.stderr, flush=True)
        return
    if main:
        remove_interrupted_saves(output_dir)
    if resume_path or overwrite or not list_checkpoints(output_dir):
        return
    raise UserError(
        f"output_dir {output_dir} already holds checkpoints: pass --resume_from_checkpoint latest to continue, "
        "--overwrite_output_dir to start over, or another --output_dir"
    )


def remove_interrupted_saves(output_dir: str) -> list[str]:
    """Delete `checkpoints/step-N.tmp` folders (saves that were killed); returns what was removed."""
    root = os.path.join(output_dir, CHECKPOINT_DIR)
    removed = []
    if os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            if name.endswith(".tmp"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
                removed.append(name)
    if removed:
        print(f"removed interrupted checkpoint save(s) in {root}: {', '.join(removed)}", file=sys.stderr, flush=True)
    return removed


def register_checkpoint_state(accelerator, **objects) -> None:
    """Save and restore `objects` (anything with `state_dict`/`load_state_dict`: the scheduler, carried LSTM states)
    with every checkpoint as JSON plus safetensors (per process when training is sharded; replicated DDP: rank 0's, as
    only rank 0 writes). Use it instead of
    `accelerator.register_for_checkpointing`, whose pickled files accelerate loads with `weights_only=False`."""
    registry = getattr(accelerator, "toolkit_checkpoint_objects", {})
    registry.update(objects)
    accelerator.toolkit_checkpoint_objects = registry


def _save_objects(accelerator, folder: str) -> None:
    objects = getattr(accelerator, "toolkit_checkpoint_objects", {})
    if not objects:
        return
    from safetensors.torch import save_file

    plain, tensors = {}, {}
    for name, obj in objects.items():
        values = {}
        for key, value in obj.state_dict().items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
            else:
                values[key] = value
        plain[name] = values
    base = os.path.join(folder, EXTRA_STATE.format(rank=accelerator.process_index))
    with open(base + ".json", "w", encoding="utf-8") as f:
        json.dump(plain, f)
    if tensors:
        save_file(tensors, base + ".safetensors")


def _load_objects(accelerator, folder: str) -> None:
    objects = getattr(accelerator, "toolkit_checkpoint_objects", {})
    if not objects:
        return
    base = os.path.join(folder, EXTRA_STATE.format(rank=accelerator.process_index))
    if not os.path.isfile(base + ".json"):
        base = os.path.join(folder, EXTRA_STATE.format(rank=0))
    if not os.path.isfile(base + ".json"):  # written by an older toolkit through accelerate's custom state
        for i, obj in enumerate(objects.values()):
            legacy = os.path.join(folder, f"custom_checkpoint_{i}.pkl")
            if os.path.isfile(legacy):
                obj.load_state_dict(safe_torch_load(legacy))
        return
    from safetensors.torch import load_file

    with open(base + ".json", encoding="utf-8") as f:
        plain = json.load(f)
    tensors = load_file(base + ".safetensors") if os.path.isfile(base + ".safetensors") else {}
    for name, obj in objects.items():
        values = dict(plain.get(name, {}))
        prefix = f"{name}."
        values.update({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        obj.load_state_dict(values)


def verify_deepspeed_files(path: str) -> None:
    """DeepSpeed's loader unpickles its checkpoint files without restriction (`weights_only=False`). Before it runs,
    load every `.pt` file with the restricted unpickler, allowing besides tensors and plain values only classes
    defined by DeepSpeed itself (its loss scaler, ZeRO stage enum, fragment addresses): a file that passes holds no
    code to run, and the same bytes are then handed to DeepSpeed."""
    import importlib

    for folder, _, names in os.walk(path):
        for name in sorted(n for n in names if n.endswith(".pt")):
            file = os.path.join(folder, name)
            allowed = []
            try:
                needed = torch.serialization.get_unsafe_globals_in_checkpoint(file)
            except (ValueError, RuntimeError, OSError) as err:
                raise UserError(f"checkpoint file {file} is not a torch.save file ({err}); it is not loaded") from None
            for qualified in needed:
                module, _, attr = qualified.rpartition(".")
                obj = None
                if module.split(".")[0] == "deepspeed":
                    try:
                        obj = getattr(importlib.import_module(module), attr, None)
                    except ImportError:
                        obj = None
                if not isinstance(obj, type):
                    raise UserError(
                        f"checkpoint file {file} refers to {qualified}, which is not a tensor, a plain value or a "
                        "DeepSpeed class; it is not loaded, since unpickling it could run code"
                    )
                allowed.append(obj)
            with torch.serialization.safe_globals(allowed):
                safe_torch_load(file, mmap=True)


def safe_torch_load(path: str, mmap: bool = False):
    """`torch.load` with the restricted unpickler: plain values and tensors only, never code."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap or None)
    except pickle.UnpicklingError as err:
        raise UserError(
            f"checkpoint file {path} holds pickled objects other than tensors and plain values; it is not loaded, "
            f"since unpickling it could run code ({str(err).splitlines()[0][:120]})"
        ) from None


def save_checkpoint(accelerator, output_dir: str, state: TrainState, save_total_limit: int | None = None) -> str:
    """Collective: every process must call it. Returns the checkpoint path."""
    root = os.path.join(output_dir, CHECKPOINT_DIR)
    final = os.path.join(root, f"step-{state.global_step:08d}")
    tmp = final + ".tmp"
    if accelerator.is_main_process:
        os.makedirs(root, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left over from an interrupted save
    accelerator.wait_for_everyone()
    for obj in getattr(accelerator, "toolkit_checkpoint_objects", {}).values():
        if hasattr(obj, "sync"):  # collective: e.g. the streaming loader gathers every rank's stream position
            obj.sync(accelerator)
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
    if sharded or accelerator.is_main_process:  # the scheduler, carried states (no pickle); DDP: rank 0's
        os.makedirs(tmp, exist_ok=True)
        _save_objects(accelerator, tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        run = getattr(accelerator, "toolkit_run_options", None)
        if run is not None:
            state.run_options = run
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


_PLAIN_BUILTINS = frozenset(
    {
        "set",
        "frozenset",
        "slice",
        "complex",
        "bytearray",
        "list",
        "dict",
        "tuple",
        "int",
        "float",
        "str",
        "bytes",
        "bool",
    }
)


class _CheckpointMetadataUnpickler(pickle.Unpickler):
    """Unpickles `torch.distributed.checkpoint` metadata (FSDP2's sharded checkpoints) and nothing else: its own
    dataclasses, torch's dtype / layout / memory-format / Size values, plain containers. Any other global (a
    function such as `os.system` or `open`) is refused before it could be called."""

    def find_class(self, module: str, name: str):
        if module == "torch.distributed.checkpoint" or module.startswith("torch.distributed.checkpoint."):
            obj = super().find_class(module, name)
            if isinstance(obj, type):
                return obj
        elif module == "torch":
            obj = getattr(torch, name, None)
            if obj is torch.Size or isinstance(obj, (torch.dtype, torch.layout, torch.memory_format)):
                return obj
        elif (module, name) == ("torch.serialization", "_get_layout"):  # name -> torch.layout, how layouts pickle
            return super().find_class(module, name)
        elif module == "pathlib" and name in ("PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"):
            return super().find_class(module, name)  # shard file names; building a path object does no I/O
        elif (module == "builtins" and name in _PLAIN_BUILTINS) or (module, name) == ("collections", "OrderedDict"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in checkpoint metadata")


def verify_dcp_metadata(path: str) -> None:
    """torch's distributed-checkpoint reader (FSDP2 checkpoints) unpickles its `.metadata` file without
    restriction. Before it runs, read every `.metadata` file with an unpickler that allows only the metadata's own
    classes and plain values: a file that passes holds no code to run."""
    for folder, _, names in os.walk(path):
        for name in sorted(n for n in names if n == ".metadata" or n.endswith(".metadata")):
            file = os.path.join(folder, name)
            try:
                with open(file, "rb") as f:
                    _CheckpointMetadataUnpickler(f).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as err:
                raise UserError(
                    f"checkpoint file {file} is not plain distributed-checkpoint metadata ({str(err)[:120]}); it is "
                    "not loaded, since unpickling it could run code"
                ) from None


def load_checkpoint(accelerator, path: str) -> TrainState:
    """Restore model, optimizer, scheduler and registered states; return the training position. Options changed
    on resume with --allow_changed_options (see `run_options.prepare_run`) are applied to the optimizer and the
    schedule after the load, rather than overwritten by the checkpoint's values."""
    from toolkit.training.run_options import reapply_optimizer_options, snapshot_optimizer_options

    objects = getattr(accelerator, "toolkit_checkpoint_objects", {})
    scheduler = objects.get("scheduler")
    fresh = snapshot_optimizer_options(scheduler)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        verify_deepspeed_files(path)
    verify_dcp_metadata(path)  # FSDP2's sharded state: torch unpickles its `.metadata` unrestricted
    try:
        with warnings.catch_warnings():  # torch's note on a foreign pickle protocol: the error below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            accelerator.load_state(path)
    except pickle.UnpicklingError as err:
        raise UserError(
            f"checkpoint {path} holds a file with pickled objects other than tensors and plain values; it is not "
            f"loaded, since unpickling it could run code ({str(err).splitlines()[0][:120]})"
        ) from None
    except (RuntimeError, KeyError, ValueError) as err:
        # "Number of custom checkpoints" comes after model, optimizer and RNG states are loaded, when the folder holds
        # accelerate custom-state pickles (older checkpoints, or planted ones): accelerate loads none of them here,
        # and `_load_objects` reads older ones with the restricted unpickler
        if "Number of custom checkpoints" not in str(err):
            first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise UserError(
                f"checkpoint {path} does not fit the model and optimizer of this run: {first[:200]}"
            ) from None
    _load_objects(accelerator, path)
    if getattr(accelerator, "toolkit_changed_options", None):
        reapply_optimizer_options(scheduler, fresh)
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
