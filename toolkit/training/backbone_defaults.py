"""Training defaults that suit the backbone, for the options the user did not set.

One set of dataclass defaults cannot suit every model: BERT's fine-tuning values (learning rate 5e-5, batch 8, one
epoch) leave a BiLSTM trained from scratch far from where it should be (68.8% vs 89.4% on a held-out dataset with
lr 2e-3 / batch 64), and a few hundred labels need many epochs where 67k need one. So a recipe first learns which
options the user set (`toolkit.config.explicit_keys`: YAML keys and flags), then `apply_defaults` fills in the rest
from the backbone's row of a table and returns what it chose, which the recipe prints and records in
`run_config.json`. A value the user set, in the YAML file or as a flag, is never changed.

Besides fixed values a row may size the run by the data:
- `min_steps` / `max_epochs`: `num_train_epochs` = the epochs that give at least `min_steps` optimizer steps, at
  most `max_epochs` (at least 1): small label budgets get more passes, large ones one pass. Not used when the user set
  `num_train_epochs` or `max_steps`.
- `warmup_ratio`: `warmup_steps` as a share of the run's optimizer steps.
- `evaluations`: `eval_steps` so that the run evaluates (and keeps the best model) about this many times.

The classification values were chosen by measurement on SST-2 at 500 and 2,000 labels (benchmarks/RESULTS.md,
"Per-backbone defaults"); the seq2seq values are those of the shipped, tuned Multi30k / DialogSum configs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from toolkit.config import explicit_keys

# Keys of a row that are rules rather than option values.
RULE_KEYS = ("min_steps", "max_epochs", "warmup_ratio", "evaluations")

# What the ELMo rows share (they differ in the learning rate only), and the same for the BERT rows.
_ELMO = dict(
    per_device_train_batch_size=32, per_device_eval_batch_size=128, weight_decay=0.0, lr_scheduler_type="linear",
    max_grad_norm=5.0, group_by_length=True, min_steps=600, max_epochs=20, warmup_ratio=0.05, evaluations=5,
)  # fmt: skip
_BERT = dict(
    per_device_train_batch_size=32, per_device_eval_batch_size=128, weight_decay=0.01, lr_scheduler_type="linear",
    max_grad_norm=1.0, group_by_length=True, min_steps=300, max_epochs=10, warmup_ratio=0.1, evaluations=5,
)  # fmt: skip

CLASSIFICATION_DEFAULTS: dict[str, dict[str, Any]] = {
    # word embeddings + BiLSTM + attention pooling, every weight from scratch
    "scratch": dict(
        learning_rate=2e-3, per_device_train_batch_size=32, per_device_eval_batch_size=128, weight_decay=0.0,
        lr_scheduler_type="linear", max_grad_norm=5.0, min_steps=600, max_epochs=20, warmup_ratio=0.05, evaluations=5,
    ),
    # frozen biLM, trained scalar mix + task BiLSTM: a fresh head, so a head-sized learning rate
    "elmo": dict(learning_rate=1e-3, **_ELMO),
    # frozen biLM plus the trainable word channel (--elmo_word_embeddings): the new word embeddings learn at the
    # scratch model's rate (RESULTS.md, "CPU preset, the first full run": lr 1e-3 60.0 vs 2e-3 63.8 at 500 labels)
    "elmo_words": dict(learning_rate=2e-3, **_ELMO),
    # the whole biLM trained as well: half the head's learning rate (RESULTS.md, run 2b)
    "elmo_finetune": dict(learning_rate=5e-4, **_ELMO),
    # a pretrained Transformer encoder (toolkit BERT, converted HF BERT such as all-MiniLM-L6-v2), all fine-tuned
    "bert": dict(learning_rate=1e-4, **_BERT),
    # a narrow pretrained encoder (hidden size < SMALL_BERT_WIDTH, e.g. the 128-wide CPU-budget BERT): small
    # models want a larger step (RESULTS.md, "CPU preset, the first full run": lr 1e-4 59.9 vs 1e-3 63.0)
    "bert_small": dict(learning_rate=1e-3, **_BERT),
}  # fmt: skip

# Encoders narrower than this get the "bert_small" row (all-MiniLM-L6-v2 is 384 wide, the CPU-budget BERT 128).
SMALL_BERT_WIDTH = 256

SEQ2SEQ_DEFAULTS: dict[str, dict[str, Any]] = {
    # multi30k_rnn_*.yaml
    "rnn": dict(
        learning_rate=2e-3, per_device_train_batch_size=64, per_device_eval_batch_size=64, weight_decay=0.0,
        lr_scheduler_type="inverse_sqrt", max_grad_norm=1.0, warmup_ratio=0.15,
    ),
    # multi30k_transformer_small.yaml / dialogsum_transformer_small.yaml
    "transformer": dict(
        learning_rate=1e-3, per_device_train_batch_size=64, per_device_eval_batch_size=64, weight_decay=1e-4,
        lr_scheduler_type="inverse_sqrt", max_grad_norm=1.0, warmup_ratio=0.15,
    ),
    # dialogsum_bert2transformer.yaml: a pretrained encoder under a fresh decoder, a lower peak
    "bert2transformer": dict(
        learning_rate=3e-4, per_device_train_batch_size=32, per_device_eval_batch_size=32, weight_decay=0.01,
        lr_scheduler_type="inverse_sqrt", max_grad_norm=1.0, warmup_ratio=0.15,
    ),
}  # fmt: skip


def _owner(name: str, configs) -> Any | None:
    for cfg in configs:
        if any(f.name == name for f in dataclasses.fields(cfg)):
            return cfg
    return None


def apply_defaults(
    row: dict[str, Any],
    configs,
    num_examples: int,
    num_processes: int = 1,
    skip_if_set: dict[str, tuple[str, ...]] | None = None,
    batches_per_epoch: int | None = None,
) -> dict[str, Any]:
    """Set, on the dataclass instances `configs`, every option of `row` that the user did not set; returns
    {option: chosen value} in the order chosen. `num_examples` training examples (sentences) size the rules;
    `skip_if_set` maps an option to others whose explicit setting also keeps it as is (e.g. the batch size is left
    alone when the user batches by tokens); `batches_per_epoch` (all processes together) replaces the estimate from
    the batch size when batches are not a fixed number of examples (token-budget batches)."""
    # warmup_steps gives way to a warmup_ratio the user set (TrainingArguments.warmup_ratio overrides it when > 0)
    skip_if_set = {"warmup_steps": ("warmup_ratio",), **(skip_if_set or {})}
    given = set().union(*(explicit_keys(cfg) for cfg in configs))
    chosen: dict[str, Any] = {}

    def free(name: str) -> Any | None:
        cfg = _owner(name, configs)
        if cfg is None or name in given or any(other in given for other in skip_if_set.get(name, ())):
            return None
        return cfg

    for name, value in row.items():
        cfg = None if name in RULE_KEYS else free(name)
        if cfg is not None:
            setattr(cfg, name, value)
            chosen[name] = value

    train = _owner("learning_rate", configs)
    if batches_per_epoch is None:
        batch = train.per_device_train_batch_size * num_processes * train.gradient_accumulation_steps
        steps_per_epoch = max(1, math.ceil(num_examples / batch))
    else:
        steps_per_epoch = max(1, math.ceil(batches_per_epoch / num_processes / train.gradient_accumulation_steps))
    if "min_steps" in row and free("num_train_epochs") is not None and free("max_steps") is not None:
        epochs = min(row.get("max_epochs", 1), max(1, math.ceil(row["min_steps"] / steps_per_epoch)))
        train.num_train_epochs = float(epochs)
        chosen["num_train_epochs"] = float(epochs)
    total = train.max_steps if train.max_steps > 0 else math.ceil(train.num_train_epochs * steps_per_epoch)
    if "warmup_ratio" in row and free("warmup_steps") is not None:
        train.warmup_steps = int(round(row["warmup_ratio"] * total))
        chosen["warmup_steps"] = train.warmup_steps
    if "evaluations" in row and free("eval_steps") is not None:
        train.eval_steps = max(1, math.ceil(total / row["evaluations"]))
        chosen["eval_steps"] = train.eval_steps
    return chosen


def describe(kind: str, chosen: dict[str, Any]) -> str:
    """The one line a recipe prints about its choices."""
    if not chosen:
        return f"defaults for the {kind} backbone: none applied (every option they cover was set)"
    values = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items())
    return f"defaults for the {kind} backbone (options you did not set; a flag or YAML key overrides): {values}"
