"""Per-backbone training defaults (toolkit.training.backbone_defaults): only options the user left alone are set,
the data size drives epochs / warmup / evaluation spacing, and the chosen values are what the run uses."""

import pytest

from tests.conftest import load_recipe
from toolkit.training.backbone_defaults import CLASSIFICATION_DEFAULTS, SEQ2SEQ_DEFAULTS, apply_defaults, describe


def _parse(*argv):
    recipe = load_recipe("finetune_classification")
    args, data_args, train_args = recipe.parse_args(["--output_dir", "unused", *argv])
    return args, train_args


@pytest.mark.parametrize(
    "examples, epochs, warmup, eval_steps",
    [(500, 10, 16, 32), (2000, 5, 32, 63), (67349, 1, 210, 421)],  # 16, 63, 2105 steps per epoch at batch 32
)
def test_bert_row_sizes_the_run_by_the_number_of_labels(examples, epochs, warmup, eval_steps):
    args, train = _parse()
    chosen = apply_defaults(CLASSIFICATION_DEFAULTS["bert"], [args, train], examples)
    assert (train.learning_rate, train.per_device_train_batch_size, train.weight_decay) == (1e-4, 32, 0.01)
    assert args.group_by_length is True and train.max_grad_norm == 1.0
    assert train.num_train_epochs == epochs and train.warmup_steps == warmup and train.eval_steps == eval_steps
    assert chosen["num_train_epochs"] == epochs and "min_steps" not in chosen


def test_options_set_by_flag_or_yaml_are_kept(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: 5.0e-5\ngroup_by_length: false\n")  # equal to the dataclass defaults: still kept
    args, train = _parse("--config", str(cfg), "--per_device_train_batch_size", "8", "--max_steps", "100")
    chosen = apply_defaults(CLASSIFICATION_DEFAULTS["scratch"], [args, train], 2000, num_processes=2)
    assert train.learning_rate == 5e-5 and train.per_device_train_batch_size == 8 and args.group_by_length is False
    assert not {"learning_rate", "per_device_train_batch_size", "group_by_length", "num_train_epochs"} & set(chosen)
    assert train.max_steps == 100 and train.warmup_steps == 5 and train.eval_steps == 20  # sized by max_steps
    assert chosen["max_grad_norm"] == 5.0 and train.max_grad_norm == 5.0
    line = describe("scratch", chosen)
    assert line.startswith("defaults for the scratch backbone") and "max_grad_norm=5" in line and "\n" not in line


def test_epochs_count_every_process_and_accumulation_step():
    args, train = _parse("--gradient_accumulation_steps", "2")
    apply_defaults(CLASSIFICATION_DEFAULTS["scratch"], [args, train], 6400, num_processes=2)
    # 6400 / (32 x 2 x 2) = 50 optimizer steps per epoch: 12 epochs reach the 600 steps
    assert train.num_train_epochs == 12 and train.warmup_steps == 30


def test_every_row_names_real_options():
    from dataclasses import fields

    recipe = load_recipe("finetune_seq2seq")
    from toolkit.training import TrainingArguments
    from toolkit.training.backbone_defaults import RULE_KEYS

    classification = {f.name for f in fields(TrainingArguments)} | {
        f.name for f in fields(load_recipe("finetune_classification").ClassificationArguments)
    }
    seq2seq = {f.name for f in fields(TrainingArguments)} | {
        f.name for dc in (recipe.Seq2SeqModelArguments, recipe.Seq2SeqDataArguments) for f in fields(dc)
    }
    for row in CLASSIFICATION_DEFAULTS.values():
        assert set(row) - set(RULE_KEYS) <= classification
    for row in SEQ2SEQ_DEFAULTS.values():
        assert set(row) - set(RULE_KEYS) <= seq2seq


def test_seq2seq_token_batches_size_the_warmup_and_keep_the_batch_size():
    recipe = load_recipe("finetune_seq2seq")
    model_args, seq_args, data_args, train = recipe.parse_args(["--model_type", "rnn", "--max_tokens", "4096"])
    chosen = apply_defaults(
        SEQ2SEQ_DEFAULTS["rnn"], [model_args, seq_args, train], 29000, num_processes=1,
        skip_if_set={"per_device_train_batch_size": ("max_tokens",)}, batches_per_epoch=200,
    )  # fmt: skip
    assert "per_device_train_batch_size" not in chosen and train.per_device_train_batch_size == 8
    assert train.learning_rate == 2e-3 and train.lr_scheduler_type == "inverse_sqrt"
    assert train.warmup_steps == 30  # 15% of one epoch of 200 token batches


def test_a_warmup_ratio_the_user_set_keeps_warmup_steps_as_is():
    from dataclasses import dataclass, field

    @dataclass
    class WarmupRatio:
        warmup_ratio: float = field(default=0.0, metadata={"help": "fraction"})

    args, train = _parse()
    chosen = apply_defaults(CLASSIFICATION_DEFAULTS["bert"], [args, train, WarmupRatio(0.2)], 2000)
    assert "warmup_steps" not in chosen and train.warmup_steps == 0 and chosen["learning_rate"] == 1e-4
