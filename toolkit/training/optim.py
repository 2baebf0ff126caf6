"""AdamW without weight decay on biases and norms, and learning-rate schedules with warmup.

The schedule is sized by optimizer steps, or, with `--max_time_minutes`, by the share of the wall-clock budget
already spent (the budget schedule of Geiping & Goldstein 2022, "Cramming"): warmup and decay then follow elapsed
training time, so a run stopped by its budget ends exactly at the end of its decay, whatever the machine's speed.
The elapsed time is part of the scheduler's state (saved in every checkpoint), so a resumed run continues the
schedule and stops when the *total* training time reaches the budget. A time-driven schedule depends on how fast the
machine runs, so it is not bit-reproducible across machines or runs (the data order and masking still are).

The step schedules are `transformers.get_scheduler`'s after warmup (tests/test_training.py checks it) and written
here on purpose for warmup: step s runs at (s + 1) / (warmup + 1) of the peak instead of s / warmup, so the first
optimizer step is not a step at learning rate 0, and the budget schedule reuses the same multipliers.
"""

from __future__ import annotations

import math
import time

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: matrices (decayed) and biases / norm weights / other 1-d tensors (not decayed)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_norm = "norm" in name.lower() or name.endswith(".bias") or param.ndim < 2
        (no_decay if is_norm else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def create_optimizer(model: torch.nn.Module, args) -> torch.optim.AdamW:
    """AdamW from `TrainingArguments`; the fused CUDA kernel when the parameters live on a GPU."""
    on_cuda = any(p.is_cuda for p in model.parameters())
    return torch.optim.AdamW(
        param_groups(model, args.weight_decay),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        fused=on_cuda or None,
    )


def lr_lambda(name: str, warmup_steps: int, total_steps: int):
    """Multiplier of the peak learning rate at optimizer step `step` (0-based)."""
    warmup_steps = max(0, warmup_steps)
    total_steps = max(1, total_steps)

    def warmup(step: int) -> float:
        return (step + 1) / (warmup_steps + 1)

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return warmup(step)
        if name == "linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
        if name == "cosine":
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if name == "inverse_sqrt":  # Vaswani et al. (2017): lr ~ 1/sqrt(step) after warmup
            return math.sqrt(max(1, warmup_steps) / max(1, step))
        if name in ("constant", "constant_with_warmup"):
            return 1.0
        raise ValueError(f"unknown lr_scheduler_type '{name}'")

    return schedule


def budget_multiplier(name: str, progress: float, warmup_ratio: float, step: int, warmup_steps: int) -> float:
    """Multiplier of the peak learning rate when `progress` (0..1) of the training budget is spent.

    Warmup is the first `warmup_ratio` of the budget, or, when that is 0, the first `warmup_steps` optimizer steps;
    decay (linear or cosine) runs from the end of warmup to progress 1. inverse_sqrt has no end and stays step-based.
    """
    if name == "inverse_sqrt":
        return lr_lambda(name, warmup_steps, 1)(step)
    progress = min(1.0, max(0.0, progress))
    if warmup_ratio > 0:
        if progress < warmup_ratio:
            return progress / warmup_ratio
        warm = 1.0
    else:
        warm = min(1.0, (step + 1) / (warmup_steps + 1)) if warmup_steps else 1.0
    done = (progress - warmup_ratio) / max(1e-12, 1.0 - warmup_ratio)
    if name == "linear":
        return warm * max(0.0, 1.0 - done)
    if name == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
    if name in ("constant", "constant_with_warmup"):
        return warm
    raise ValueError(f"unknown lr_scheduler_type '{name}'")


class BudgetScheduler(LRScheduler):
    """Learning rate as a function of the spent share of a wall-clock budget (or of max_steps, whichever is nearer).

    `progress = max(elapsed_s / budget_s, step / total_steps)`, so the decay ends where the run ends, whether the
    budget or the step count stops it. The clock counts from construction, from `start()` (call it where timed
    training begins, after data preparation) or from `load_state_dict` (resume), on top of the training time of
    earlier runs kept in the state. With several processes, rank 0's clock is broadcast at each step, so every
    process applies the same learning rate and agrees on when the budget is spent.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        name: str,
        budget_s: float,
        total_steps: int,
        warmup_ratio: float = 0.0,
        warmup_steps: int = 0,
        clock=time.perf_counter,
    ):
        self.name = name
        self.budget_s = float(budget_s)
        self.total_steps = max(1, int(total_steps))
        self.warmup_ratio = float(warmup_ratio)
        self.warmup_steps = int(warmup_steps)
        self.clock = clock
        self.elapsed_before_s = 0.0  # training time of the runs this one resumes
        self.time_share = 0.0  # elapsed / budget at the last step, agreed by all processes
        self._started = clock()
        super().__init__(optimizer)

    def start(self) -> None:
        """(Re)start this run's clock now: time since construction or resume (data, first evaluation) is not
        training time."""
        self._started = self.clock()

    def elapsed_s(self) -> float:
        """Training seconds so far, earlier runs included (this process's clock)."""
        return self.elapsed_before_s + self.clock() - self._started

    def progress(self) -> float:
        return max(self.time_share, self.last_epoch / self.total_steps)

    def budget_spent(self) -> bool:
        """Whether the budget is used up (as of the last `step()`; the same answer on every process)."""
        return self.time_share >= 1.0

    def step(self, epoch=None) -> None:
        self.time_share = _from_rank0(self.elapsed_s()) / self.budget_s
        super().step()

    def get_lr(self) -> list[float]:
        factor = budget_multiplier(self.name, self.progress(), self.warmup_ratio, self.last_epoch, self.warmup_steps)
        return [base * factor for base in self.base_lrs]

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "clock", "_started")}
        state["elapsed_before_s"] = self.elapsed_s()  # what a resumed run starts from
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(state_dict)
        self._started = self.clock()


def _from_rank0(value: float) -> float:
    """`value` as process 0 sees it (a no-op in a single process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    if torch.distributed.get_world_size() == 1:
        return value
    from accelerate import PartialState
    from accelerate.utils import broadcast

    tensor = torch.tensor([value], dtype=torch.float64, device=PartialState().device)
    return float(broadcast(tensor, from_process=0).item())


def create_scheduler(optimizer: torch.optim.Optimizer, args, total_steps: int) -> LRScheduler:
    """Schedule stepped once per optimizer step. Not passed to `accelerator.prepare`: the recipes step it
    themselves on sync steps, so the schedule is the same for any number of processes.

    With `args.max_time_minutes`, a `BudgetScheduler` (time-driven, see the module docstring); else a step schedule
    with `warmup_steps` (or `warmup_ratio` of `total_steps`) of linear warmup.
    """
    warmup_ratio = getattr(args, "warmup_ratio", 0.0) or 0.0
    if getattr(args, "max_time_minutes", None):
        return BudgetScheduler(
            optimizer,
            args.lr_scheduler_type,
            60.0 * args.max_time_minutes,
            total_steps,
            warmup_ratio=warmup_ratio,
            warmup_steps=args.warmup_steps,
        )
    warmup_steps = round(warmup_ratio * total_steps) if warmup_ratio > 0 else args.warmup_steps
    return LambdaLR(optimizer, lr_lambda(args.lr_scheduler_type, warmup_steps, total_steps))


def start_training_clock(scheduler) -> float:
    """Mark the start of timed training: starts a `BudgetScheduler`'s clock; returns `time.perf_counter()`."""
    if isinstance(scheduler, BudgetScheduler):
        scheduler.start()
    return time.perf_counter()
