"""Training options shared by every recipe. Names follow the Hugging Face example scripts."""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEDULERS = ("linear", "cosine", "inverse_sqrt", "constant", "constant_with_warmup")
TRACKERS = ("none", "tensorboard", "wandb", "all")


# Tracker -> (packages any one of which accelerate accepts, the pip command that installs one).
TRACKER_PACKAGES = {
    "tensorboard": (("tensorboard", "tensorboardX"), 'pip install tensorboard (or: pip install -e ".[tracking]")'),
    "wandb": (("wandb",), 'pip install wandb (or: pip install -e ".[tracking]")'),
}


def check_tracker_installed(report_to: str) -> None:
    """Fail before any work when `--report_to` names a tracker that is not installed (accelerate would only warn
    and log nothing)."""
    import importlib.util

    if report_to == "none":
        return
    wanted = list(TRACKER_PACKAGES) if report_to == "all" else [report_to]
    missing = [t for t in wanted if not any(importlib.util.find_spec(p) for p in TRACKER_PACKAGES[t][0])]
    if report_to == "all" and len(missing) < len(wanted):
        return  # "all": whatever is installed
    if missing:
        raise ValueError(
            f"report_to '{report_to}': {' and '.join(missing)} is not installed; "
            f"{'; '.join(TRACKER_PACKAGES[t][1] for t in missing)}, or pass --report_to none"
        )


@dataclass
class TrainingArguments:
    output_dir: str = field(default="outputs/run", metadata={"help": "Where checkpoints, the model and metrics go."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into a non-empty output_dir without resuming."}
    )
    seed: int = field(default=42, metadata={"help": "Seed for initialisation, data order and masking."})
    max_steps: int = field(default=-1, metadata={"help": "Total optimizer steps; overrides num_train_epochs if > 0."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the training data."})
    max_time_minutes: float | None = field(
        default=None,
        metadata={
            "help": "Wall-clock budget of the training loop, counted from its first step (data preparation is not "
            "part of it; a resumed run continues it) and checked after every optimizer step: training stops when it "
            "is spent, and warmup and decay follow the spent share of it (or of max_steps, whichever ends first). "
            "Not bit-reproducible."
        },
    )
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Micro-batch size per process."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Evaluation batch size per process."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (never on biases and norms)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": f"One of {', '.join(SCHEDULERS)}."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warmup steps."})
    warmup_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Linear warmup as a fraction of training (of the time budget when --max_time_minutes is set); "
            "overrides warmup_steps when > 0."
        },
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    eval_steps: int = field(default=500, metadata={"help": "Evaluate every N optimizer steps (0: only at the end)."})
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N optimizer steps (0: never)."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep only the last K checkpoints."})
    logging_steps: int = field(default=50, metadata={"help": "Log loss, learning rate and tokens/s every N steps."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'latest' for the newest in output_dir/checkpoints."}
    )
    allow_changed_options: bool = field(
        default=False,
        metadata={
            "help": "On resume, apply options that differ from the checkpoint's (learning rate, schedule, max_steps, "
            "...) instead of refusing; batch geometry, seed and world size can never change."
        },
    )
    report_to: str = field(default="none", metadata={"help": f"Tracker: one of {', '.join(TRACKERS)}."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final model folder to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repository name, e.g. user/my-model."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repository as private."})
    torch_compile: bool = field(default=False, metadata={"help": "Compile the model with torch.compile."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})

    def __post_init__(self):
        if self.lr_scheduler_type not in SCHEDULERS:
            raise ValueError(f"lr_scheduler_type '{self.lr_scheduler_type}' is not one of {', '.join(SCHEDULERS)}")
        if self.report_to not in TRACKERS:
            raise ValueError(f"report_to '{self.report_to}' is not one of {', '.join(TRACKERS)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        check_tracker_installed(self.report_to)
        if self.gradient_accumulation_steps < 1:
            raise ValueError("gradient_accumulation_steps must be >= 1")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be > 0 (or -1: train num_train_epochs), got {self.max_steps}")
        if self.max_steps == -1 and not self.num_train_epochs > 0:
            raise ValueError(f"num_train_epochs must be > 0 when max_steps is not set, got {self.num_train_epochs}")
        if self.learning_rate < 0:
            raise ValueError(f"learning_rate must be >= 0, got {self.learning_rate}")
        for name in ("logging_steps", "eval_steps", "save_steps", "warmup_steps", "dataloader_num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_time_minutes is not None and not self.max_time_minutes > 0:
            raise ValueError(f"max_time_minutes must be > 0, got {self.max_time_minutes}")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("push_to_hub needs hub_model_id (e.g. --hub_model_id user/my-model)")
