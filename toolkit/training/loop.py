"""Small helpers the recipes compose into their training loop (no Trainer class: the loop stays in the recipe).

- `make_accelerator`: Accelerator with seeded, resumable data order and the chosen tracker.
- `training_batches`: yields micro-batches epoch after epoch, skipping what a resumed run already consumed.
- `ProgressLogger`: tqdm bar on the main process; loss is reduced and `.item()`-ed only at logging steps.
- `training_finished` (step count or time budget) and `evaluation_at_last_step`: the loop's two shared rules.
- `save_final_model`: gathers the full state dict (DDP, FSDP, DeepSpeed alike) and writes a loadable HF folder.
"""

from __future__ import annotations

import json
import math
import os
import time

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, InitProcessGroupKwargs, set_seed
from tqdm.auto import tqdm

from toolkit.errors import UserError
from toolkit.training import preemption
from toolkit.training.checkpoint import TrainState
from toolkit.training.optim import BudgetScheduler


def make_accelerator(args, **kwargs) -> Accelerator:
    """Accelerator for `TrainingArguments`; mixed precision and distribution come from `accelerate launch`."""
    log_with = None if args.report_to == "none" else args.report_to
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
            # DeepSpeed on CPU (its CPU accelerator; how the tests run it): accelerate only starts the process group
            # when told the backend, and `cpu=True` would turn DeepSpeed off.
            handlers = kwargs.setdefault("kwargs_handlers", [])
            if not any(isinstance(h, InitProcessGroupKwargs) for h in handlers):
                handlers.append(InitProcessGroupKwargs(backend="gloo"))
        else:
            # `accelerate launch --multi_gpu --num_processes N` on a machine without GPUs: real gloo processes.
            kwargs.setdefault("cpu", True)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=log_with,
        project_dir=args.output_dir,
        dataloader_config=DataLoaderConfiguration(
            use_seedable_sampler=True, data_seed=args.seed, non_blocking=torch.cuda.is_available()
        ),
        **kwargs,
    )
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None:
        configure_deepspeed(plugin, accelerator, args)
    set_seed(args.seed)
    preemption.install(accelerator)  # SIGTERM / SIGINT / SIGUSR1: checkpoint at the step and exit
    return accelerator


def configure_deepspeed(plugin, accelerator: Accelerator, args) -> None:
    """Make a DeepSpeed run train as the recipe's arguments say, as DDP would.

    DeepSpeed clips gradients and accumulates micro-batches itself, from its own config, and accelerate lets an
    accelerate config's `gradient_accumulation_steps` replace the one the script asked for. So the shipped DeepSpeed
    configs leave both unset and they are filled here from --max_grad_norm / --gradient_accumulation_steps; a config
    that sets a different value is an error naming the key, rather than a silently different training run.
    """
    if accelerator.gradient_accumulation_steps != args.gradient_accumulation_steps:
        raise UserError(
            f"the accelerate config sets deepspeed_config.gradient_accumulation_steps="
            f"{accelerator.gradient_accumulation_steps} but --gradient_accumulation_steps is "
            f"{args.gradient_accumulation_steps}: remove the key from the accelerate config (the recipe's value is used)"
        )
    clipping = plugin.deepspeed_config.get("gradient_clipping", "auto")
    if clipping == "auto":
        plugin.deepspeed_config["gradient_clipping"] = float(args.max_grad_norm)
    elif float(clipping) != float(args.max_grad_norm):
        raise UserError(
            f"the accelerate config sets deepspeed_config.gradient_clipping={clipping} but --max_grad_norm is "
            f"{args.max_grad_norm}: remove the key from the accelerate config (the recipe's value is used)"
        )
    if plugin.is_auto("train_micro_batch_size_per_gpu"):
        # DeepSpeed wants an integer micro-batch size, which accelerate reads off the DataLoader; token-count
        # batching (seq2seq) has none, so give DeepSpeed the nominal one. The real batches still come from the loader.
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = args.per_device_train_batch_size


def total_training_steps(args, num_batches_per_epoch: int) -> tuple[int, int]:
    """(optimizer steps in total, epochs to iterate) from max_steps or num_train_epochs."""
    steps_per_epoch = max(1, math.ceil(num_batches_per_epoch / args.gradient_accumulation_steps))
    if args.max_steps > 0:
        return args.max_steps, math.ceil(args.max_steps / steps_per_epoch)
    return math.ceil(args.num_train_epochs * steps_per_epoch), math.ceil(args.num_train_epochs)


def training_batches(accelerator: Accelerator, dataloader, state: TrainState, num_epochs: int):
    """Yield micro-batches from `state.epoch`/`state.batch_in_epoch` on, keeping `state` up to date.

    The data order of epoch e depends only on (seed, e) (a collator with `set_epoch`, such as the MLM masking, is told
    the epoch too, before the epoch's first batch), and before each micro-batch the global torch RNG (dropout)
    is reseeded from (seed, epoch, micro-batch, process index). So a resumed run sees exactly the batches and random
    numbers the uninterrupted run would have seen, without relying on per-process RNG files in the checkpoint.
    """
    seed = accelerator.dataloader_config.data_seed or 0
    while state.epoch < num_epochs:
        if hasattr(dataloader, "set_epoch"):
            dataloader.set_epoch(state.epoch)
        if hasattr(getattr(dataloader, "collate_fn", None), "set_epoch"):  # e.g. dynamic masking (DataCollatorForMLM)
            dataloader.collate_fn.set_epoch(state.epoch)
        batches = dataloader
        if state.batch_in_epoch:
            batches = accelerator.skip_first_batches(dataloader, state.batch_in_epoch)
        for batch in batches:
            torch.manual_seed(position_seed(seed, state.epoch, state.batch_in_epoch, accelerator.process_index))
            state.batch_in_epoch += 1
            yield batch
        state.epoch += 1
        state.batch_in_epoch = 0


def position_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (splitmix64 steps), so nearby positions get unrelated streams."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return x >> 1


class ProgressLogger:
    """Progress bar + periodic metrics. Call `update(loss, n_tokens)` every micro-batch and `step(lr)` after
    each optimizer step; nothing synchronises with the device except at logging steps."""

    def __init__(self, accelerator: Accelerator, total_steps: int, state: TrainState, logging_steps: int):
        self.accelerator = accelerator
        self.state = state
        self.logging_steps = max(1, logging_steps)
        self.bar = tqdm(
            total=total_steps, initial=state.global_step, disable=not accelerator.is_local_main_process, desc="train"
        )
        self._loss_sum = None
        self._loss_count = 0
        self._tokens = None
        self._t0 = time.perf_counter()
        self.start_time = self._t0
        self.start_tokens = state.tokens_seen
        self.last_loss: float | None = None
        if state.pending_log:  # a run stopped between logging steps: continue its logging window
            pending = state.pending_log
            self._loss_sum = torch.tensor(pending["loss_sum"], device=accelerator.device)
            self._loss_count = pending["count"]
            self._tokens = torch.tensor(
                pending["tokens"] if accelerator.is_main_process else 0, device=accelerator.device
            )
            state.pending_log = None

    def update(self, loss: torch.Tensor, n_tokens) -> None:
        loss = loss.detach().float()
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        self._loss_count += 1
        n = torch.as_tensor(n_tokens, device=loss.device)
        self._tokens = n if self._tokens is None else self._tokens + n

    def step(self, lr: float, extra: dict | None = None) -> dict | None:
        """Advance the bar by one optimizer step; returns the logged metrics at logging steps."""
        self.bar.update(1)
        if self.state.global_step % self.logging_steps and self.state.global_step != self.bar.total:
            return None
        return self.log(lr, extra)

    def log(self, lr: float, extra: dict | None = None) -> dict | None:
        if self._loss_sum is None:
            return None
        loss = self.accelerator.reduce(self._loss_sum / self._loss_count, reduction="mean").item()
        tokens = int(self.accelerator.reduce(self._tokens, reduction="sum").item())
        now = time.perf_counter()
        self.state.tokens_seen += tokens
        metrics = {
            "loss": round(loss, 4),
            "learning_rate": lr,
            "tokens_per_second": round(tokens / max(1e-9, now - self._t0), 1),
            "epoch": self.state.epoch,
            **(extra or {}),
        }
        self.last_loss = loss
        self._loss_sum, self._loss_count, self._tokens, self._t0 = None, 0, None, now
        self.record(metrics)
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{metrics['tokens_per_second']:.0f}")
        return metrics

    def record(self, metrics: dict) -> None:
        """Send metrics to trackers, keep them in the training state's history, print them on the main process."""
        self.accelerator.log(metrics, step=self.state.global_step)
        self.state.log_history.append({"step": self.state.global_step, **metrics})
        if self.accelerator.is_main_process or os.environ.get("TOOLKIT_LOG_ALL_RANKS") == "1":
            rank = {"rank": self.accelerator.process_index} if self.accelerator.num_processes > 1 else {}
            self.bar.write(json.dumps({"step": self.state.global_step, **rank, **metrics}))

    def pending_window(self) -> dict | None:
        """Collective. The micro-batches since the last logging step, reduced over processes, so that a checkpoint
        written between logging steps lets the resumed run log exactly what the uninterrupted run logs."""
        if self._loss_sum is None:
            return None
        loss_sum = self.accelerator.reduce(self._loss_sum.clone(), reduction="mean").item()
        tokens = int(self.accelerator.reduce(torch.as_tensor(self._tokens).clone(), reduction="sum").item())
        return {"loss_sum": loss_sum, "count": self._loss_count, "tokens": tokens}

    def close(self) -> None:
        """Collective. Counts the micro-batches since the last logging step (a run cut by its time budget stops
        between logging steps), so `last_loss`, `tokens_seen` and the throughput line cover the whole run."""
        if self._loss_sum is not None:
            self.last_loss = self.accelerator.reduce(self._loss_sum / self._loss_count, reduction="mean").item()
            self.state.tokens_seen += int(self.accelerator.reduce(self._tokens, reduction="sum").item())
            self._loss_sum, self._loss_count, self._tokens = None, 0, None
        self.bar.close()
        preemption.disarm()  # the loop is over: a signal now stops at once

    def finish(self, lr: float, flops_per_token: float | None = None) -> None:
        """Collective. The end of every recipe's loop: log the steps since the last logging step (a run cut by its
        time budget, by early stopping or by the end of its data stops between them), close the bar, print the
        throughput line."""
        self.log(lr)
        self.close()
        self.accelerator.print(self.throughput_line(flops_per_token))

    def throughput_line(self, flops_per_token: float | None = None) -> str:
        """`tokens/s` over the whole run (and, on CUDA with `flops_per_token`, the fraction of dense bf16 peak)."""
        seconds = max(1e-9, time.perf_counter() - self.start_time)
        tokens_per_s = (self.state.tokens_seen - self.start_tokens) / seconds
        line = f"throughput: {tokens_per_s:,.0f} tokens/s over {seconds:,.1f} s on {self.accelerator.num_processes} process(es)"
        if flops_per_token and torch.cuda.is_available():
            peak = 989e12 * self.accelerator.num_processes  # dense bf16 peak of an H100/H200
            line += f", {tokens_per_s * flops_per_token / peak:.1%} of dense bf16 peak"
        return line


def training_finished(state: TrainState, total_steps: int, scheduler) -> bool:
    """The one stopping rule of the recipes, checked after every optimizer step: `total_steps` are done, or the
    `--max_time_minutes` budget is spent. The budget is kept by the run's `BudgetScheduler` (what `create_scheduler`
    returns whenever --max_time_minutes is set): it counts training time from `start_training_clock` (so data
    preparation and the first evaluation are not part of it), adds the training time of the runs a resumed run
    continues, and every process agrees on it (rank 0's clock)."""
    return state.global_step >= total_steps or (isinstance(scheduler, BudgetScheduler) and scheduler.budget_spent())


def evaluation_at_last_step(state: TrainState) -> dict | None:
    """The metrics of the evaluation logged at the current step, or None when the last step was not evaluated (then
    the recipe evaluates once more before the final save). Read from the log history, so a run resumed from a
    checkpoint written at its last step does not evaluate that step twice."""
    for entry in reversed(state.log_history):
        if entry.get("step") != state.global_step:
            break
        if "eval_loss" in entry:
            return {k: v for k, v in entry.items() if k != "step"}
    return None


def final_evaluation(state: TrainState, progress: ProgressLogger, evaluate_fn) -> dict:
    """The metrics of the last step: those of the evaluation logged at it, else `evaluate_fn()`, run now and
    recorded in the log history."""
    metrics = evaluation_at_last_step(state)
    if metrics is None:
        metrics = evaluate_fn()
        progress.record(metrics)
    return metrics


def save_final_model(
    accelerator: Accelerator,
    model,
    tokenizer,
    output_dir: str,
    run_config: dict | None = None,
    metrics: dict | None = None,
):
    """Collective. Writes `save_pretrained` weights + code, the tokenizer and, when given, the resolved config
    (`run_config.json`) and metrics (`all_results.json`). Returns the unwrapped model."""
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)  # gathers FSDP / DeepSpeed shards on the main process
    unwrapped = accelerator.unwrap_model(model)
    if hasattr(unwrapped, "_orig_mod"):  # torch.compile wrapper
        unwrapped = unwrapped._orig_mod
    tied = getattr(unwrapped, "_tied_weights_keys", None)
    if state_dict and isinstance(tied, dict):
        # DeepSpeed's gathered state dict holds tied weights as separate copies, which save_pretrained would then
        # write twice; drop the copy, as a DDP save does (from_pretrained ties it again).
        for copy, source in tied.items():
            if copy in state_dict and source in state_dict and torch.equal(state_dict[copy], state_dict[source]):
                del state_dict[copy]
    unwrapped.save_pretrained(
        output_dir, state_dict=state_dict, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if accelerator.is_main_process:
        if tokenizer is not None:
            tokenizer.save_pretrained(output_dir)
        if run_config is not None:
            write_json(os.path.join(output_dir, "run_config.json"), run_config)
        if metrics is not None:
            write_json(os.path.join(output_dir, "all_results.json"), metrics)
    accelerator.wait_for_everyone()
    return unwrapped


def write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
