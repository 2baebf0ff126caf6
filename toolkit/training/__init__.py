"""Training helpers shared by the recipes (see each module's docstring)."""

from toolkit.training.arguments import TrainingArguments
from toolkit.training.backbone_defaults import (
    CLASSIFICATION_DEFAULTS,
    SEQ2SEQ_DEFAULTS,
    SMALL_BERT_WIDTH,
    apply_defaults,
    describe,
)
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
    evaluation_at_last_step,
    final_evaluation,
    make_accelerator,
    save_final_model,
    total_training_steps,
    training_batches,
    training_finished,
    write_json,
)
from toolkit.training.optim import BudgetScheduler, create_optimizer, create_scheduler, start_training_clock
from toolkit.training.preemption import EXIT_PREEMPTED, exit_if_preempted
from toolkit.training.preflight import check_positions, field_default, fit_length_to_model, model_config_dict
from toolkit.training.report import finish_run, run_header
from toolkit.training.run_options import prepare_run

__all__ = [
    "CLASSIFICATION_DEFAULTS",
    "SMALL_BERT_WIDTH",
    "SEQ2SEQ_DEFAULTS",
    "apply_defaults",
    "check_positions",
    "describe",
    "field_default",
    "fit_length_to_model",
    "model_config_dict",
    "BudgetScheduler",
    "EXIT_PREEMPTED",
    "exit_if_preempted",
    "prepare_run",
    "register_checkpoint_state",
    "TrainState",
    "TrainingArguments",
    "ProgressLogger",
    "evaluation_at_last_step",
    "final_evaluation",
    "finish_run",
    "run_header",
    "training_finished",
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
    "total_training_steps",
    "start_training_clock",
    "training_batches",
    "write_json",
]
