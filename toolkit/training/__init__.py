"""Training helpers shared by the recipes (see each module's docstring)."""

from toolkit.training.arguments import TrainingArguments
from toolkit.training.checkpoint import (
    TrainState,
    check_output_dir,
    list_checkpoints,
    load_checkpoint,
    load_full_state_dict,
    load_saved_model,
    register_checkpoint_state,
    resolve_checkpoint,
    save_checkpoint,
    sharded_checkpoints,
)
from toolkit.training.loop import (
    ProgressLogger,
    make_accelerator,
    save_final_model,
    time_budget_exceeded,
    total_training_steps,
    training_batches,
    write_json,
)
from toolkit.training.optim import BudgetScheduler, create_optimizer, create_scheduler, start_training_clock
from toolkit.training.preemption import EXIT_PREEMPTED, exit_if_preempted
from toolkit.training.run_options import prepare_run

__all__ = [
    "BudgetScheduler",
    "EXIT_PREEMPTED",
    "exit_if_preempted",
    "prepare_run",
    "register_checkpoint_state",
    "TrainState",
    "TrainingArguments",
    "ProgressLogger",
    "check_output_dir",
    "create_optimizer",
    "create_scheduler",
    "list_checkpoints",
    "load_checkpoint",
    "load_full_state_dict",
    "load_saved_model",
    "make_accelerator",
    "resolve_checkpoint",
    "save_checkpoint",
    "sharded_checkpoints",
    "save_final_model",
    "time_budget_exceeded",
    "total_training_steps",
    "start_training_clock",
    "training_batches",
    "write_json",
]
