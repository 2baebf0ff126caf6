"""A minimal recipe over the shared training helpers, used to test them (resume, multi-process equivalence).

Trains a tiny regression MLP with dropout on synthetic data. Prints one JSON line per optimizer step:
{"step": ..., "loss": ...} (loss of that step's global batch, identical on every rank).
"""

import json
import os
import sys
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from toolkit.config import parse_args, to_dict  # noqa: E402
from toolkit.errors import exit_on_user_error  # noqa: E402
from toolkit.training import (  # noqa: E402
    TrainingArguments,
    TrainState,
    create_optimizer,
    create_scheduler,
    exit_if_preempted,
    load_checkpoint,
    make_accelerator,
    prepare_run,
    register_checkpoint_state,
    save_checkpoint,
    total_training_steps,
    training_batches,
)


@dataclass
class TinyArguments:
    num_examples: int = field(default=64, metadata={"help": "Synthetic examples."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout in the MLP."})
    stop_after_steps: int = field(default=0, metadata={"help": "Simulate an interruption after N steps."})


class Synthetic(Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x.sum(-1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


@exit_on_user_error
def main(tiny: TinyArguments, args: TrainingArguments):
    accelerator = make_accelerator(args)
    resume = prepare_run(accelerator, args, args)  # TinyArguments are test knobs (stop_after_steps), not options
    loader = DataLoader(Synthetic(tiny.num_examples), batch_size=args.per_device_train_batch_size, shuffle=True)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(tiny.dropout), torch.nn.Linear(16, 1))
    optimizer = create_optimizer(model, args)
    total_steps, num_epochs = total_training_steps(args, len(loader) // accelerator.num_processes)
    scheduler = create_scheduler(optimizer, args, total_steps)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    register_checkpoint_state(accelerator, scheduler=scheduler)
    state = load_checkpoint(accelerator, resume) if resume else TrainState()
    step_loss = torch.zeros(())
    for batch in training_batches(accelerator, loader, state, num_epochs):
        with accelerator.accumulate(model):
            loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
            accelerator.backward(loss)
            step_loss += loss.detach() / args.gradient_accumulation_steps
            if accelerator.sync_gradients and args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        if accelerator.sync_gradients:
            scheduler.step()
            state.global_step += 1
            global_loss = accelerator.reduce(step_loss, reduction="mean").item()
            step_loss = torch.zeros(())
            if accelerator.is_main_process:
                lr = scheduler.get_last_lr()[0]
                print(json.dumps({"step": state.global_step, "loss": global_loss, "lr": lr}), flush=True)
            if args.save_steps and state.global_step % args.save_steps == 0:
                save_checkpoint(accelerator, args.output_dir, state, args.save_total_limit)
            exit_if_preempted(accelerator, args, state)
            if state.global_step >= total_steps or state.global_step == tiny.stop_after_steps:
                break
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        weights = accelerator.unwrap_model(model).state_dict()
        print(json.dumps({"final_weight_sum": float(sum(p.sum() for p in weights.values()))}))
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "config_used.json"), "w") as f:
            json.dump(to_dict(tiny, args), f)
    accelerator.end_training()


if __name__ == "__main__":
    main(*parse_args(TinyArguments, TrainingArguments))
