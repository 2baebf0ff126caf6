"""What defines a run, recorded in every checkpoint and compared on resume.

Every resolved option of the recipe (model shape, data and tokenizer, batch sizes and accumulation, schedule,
learning rate, seed, max_steps / epochs), plus the number of processes and the distribution type, is stored in the
checkpoint's `trainer_state.json`. On resume, an option that differs from the checkpoint's is refused in one line
naming each changed key with its old and new value, except

- options that are safe to change (`SAFE`: logging / evaluation / saving cadence, output and tracking), and
- with `--allow_changed_options`, options whose change can be applied for real: the optimizer's learning rate,
  betas, epsilon and weight decay are taken from the command line after the checkpoint is loaded, and the schedule
  is rebuilt from the new max_steps / warmup / type at the resumed step. `run_config.json` then records what ran.

Changes that a resumed run cannot honour (`FIXED`: the batch geometry and the seed, which fix which examples the
checkpoint's position skips, the number of processes and the distribution type) are refused even then.
"""

from __future__ import annotations

import json
import os

from toolkit.config import to_dict
from toolkit.errors import UserError
from toolkit.training.checkpoint import STATE_FILE, check_output_dir, resolve_checkpoint
from toolkit.training.preflight import check_writable

SAFE = frozenset(
    {
        "output_dir",
        "overwrite_output_dir",
        "resume_from_checkpoint",
        "allow_changed_options",
        "logging_steps",
        "eval_steps",
        "save_steps",
        "save_total_limit",
        "report_to",
        "push_to_hub",
        "hub_model_id",
        "hub_private",
        "max_time_minutes",
        "dataloader_num_workers",
        "preprocessing_num_workers",
        "per_device_eval_batch_size",
        "torch_compile",
    }
)
FIXED = frozenset(
    {"per_device_train_batch_size", "gradient_accumulation_steps", "seed", "num_processes", "distributed_type"}
)
_OPTIMIZER_KEYS = ("initial_lr", "weight_decay", "betas", "eps")


def run_options(accelerator, *configs) -> dict:
    """The resolved options of this run (JSON-ready), with the world size and distribution type."""
    options = json.loads(json.dumps(to_dict(*configs), default=str))
    options["num_processes"] = accelerator.num_processes
    options["distributed_type"] = str(accelerator.distributed_type)
    return options


def changed_options(saved: dict, current: dict) -> dict[str, tuple]:
    """{key: (old, new)} for run-defining keys that differ (keys missing on one side count as changed)."""
    keys = (set(saved) | set(current)) - SAFE
    return {k: (saved.get(k), current.get(k)) for k in sorted(keys) if saved.get(k) != current.get(k)}


def prepare_run(accelerator, args, *configs) -> str | None:
    """Before any heavy work: resolve `--resume_from_checkpoint`, check (or, with `--overwrite_output_dir`, clear)
    output_dir, and compare the options with the checkpoint's. Returns the checkpoint to resume from, or None.
    `configs` are all of the recipe's argument groups (`args`, its `TrainingArguments`, among them)."""
    resume = resolve_checkpoint(args.output_dir, args.resume_from_checkpoint)
    check_output_dir(args.output_dir, resume, args.overwrite_output_dir)
    check_writable(args.output_dir)
    current = run_options(accelerator, *configs)
    accelerator.toolkit_run_options = current
    accelerator.toolkit_changed_options = {}
    if not resume:
        return None
    with open(os.path.join(resume, STATE_FILE), encoding="utf-8") as f:
        saved = json.load(f).get("run_options") or {}
    if not saved:  # written before options were recorded: nothing to compare
        return resume
    changed = changed_options(saved, current)
    fixed = {k: v for k, v in changed.items() if k in FIXED}
    described = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
    if fixed:
        raise UserError(
            f"checkpoint {resume} was written with other options, and {', '.join(fixed)} cannot change on resume "
            f"({described}): start a new run in another --output_dir"
        )
    if changed and not getattr(args, "allow_changed_options", False):
        raise UserError(
            f"checkpoint {resume} was written with other options ({described}): pass the checkpoint's values, or "
            "--allow_changed_options to apply the new ones"
        )
    if changed and accelerator.is_main_process:
        print(f"resuming with changed options (applied): {described}", flush=True)
    accelerator.toolkit_changed_options = changed
    return resume


def snapshot_optimizer_options(scheduler) -> list[dict] | None:
    """The optimizer hyperparameters this run was built with (before a checkpoint overwrites them)."""
    if scheduler is None:
        return None
    return [{k: group[k] for k in _OPTIMIZER_KEYS if k in group} for group in scheduler.optimizer.param_groups]


def reapply_optimizer_options(scheduler, fresh: list[dict] | None) -> None:
    """Put this run's hyperparameters back after loading a checkpoint, and set the learning rate the (rebuilt)
    schedule gives at the resumed step: a changed --learning_rate / --max_steps / --warmup_steps takes effect."""
    if scheduler is None or fresh is None:
        return
    for group, values in zip(scheduler.optimizer.param_groups, fresh):
        group.update(values)
    scheduler.base_lrs = [group["initial_lr"] for group in scheduler.optimizer.param_groups]
    step = scheduler.last_epoch
    lrs = [base * fn(step) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs
