"""AdamW without weight decay on biases and norms, and learning-rate schedules with warmup."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


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


def create_scheduler(optimizer: torch.optim.Optimizer, args, total_steps: int) -> LambdaLR:
    """Schedule stepped once per optimizer step. Not passed to `accelerator.prepare`: the recipes step it
    themselves on sync steps, so the schedule is the same for any number of processes."""
    return LambdaLR(optimizer, lr_lambda(args.lr_scheduler_type, args.warmup_steps, total_steps))
