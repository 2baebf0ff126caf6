"""Fine-tune a sentence (or sentence-pair) classifier on a pretrained backbone, or train the BiLSTM baseline from scratch.

Backbones (`--model_name_or_path`):
- a toolkit BERT checkpoint (`toolkit_bert`): [CLS]-pooler (or the mean of the last layer, or a task BiLSTM over a
  learned mix of every layer: `--classifier_pooling`) -> dropout -> linear, whole network fine-tuned;
- a toolkit ELMo checkpoint (`toolkit_elmo`): frozen biLM with a learned scalar mix of its layers -> task BiLSTM ->
  attention pooling (Peters et al., 2018); `--elmo_full_finetune` trains the biLM too;
- any Hugging Face BERT-compatible folder (`model_type: bert`, e.g. all-MiniLM-L6-v2): converted on the fly to
  `toolkit_bert` with `toolkit.models.bert.convert` (written to `<output_dir>/converted_backbone`);
- `scratch`: word embeddings + BiLSTM + attention pooling (`toolkit.models.bilstm`) with a word vocabulary built
  from the training texts.

Data: `--dataset_name glue --dataset_config_name sst2` (Hub) or local `--train_file/--validation_file/--test_file`
(tsv/csv/jsonl/json), `--text_column`, optional `--text_pair_column`, `--label_column` (ints or strings). The label
mapping is stored in the saved config (`id2label` / `label2id`); validation/test labels the model never saw are a
one-line error.

Outputs in `--output_dir`: the best model (by `--metric_for_best_model` on validation, `--early_stopping_patience`
evaluations without improvement stop training), its tokenizer and code, `all_results.json`,
`{validation,test}_predictions.tsv` (text, gold, predicted, probability), `{validation,test}_confusion_matrix.png`,
`README.md` (model card, results as model-index); `--push_to_hub` uploads the folder.

    # demo data, CPU, a few minutes
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/finetune_classification.py \
        --config recipes/configs/classification/quickstart.yaml
    # SST-2 with a toolkit BERT, 2 processes
    accelerate launch --multi_gpu --num_processes 2 recipes/finetune_classification.py \
        --config recipes/configs/classification/sst2_bert.yaml
    # GLUE from the Hub, sentence pairs
    accelerate launch recipes/finetune_classification.py --model_name_or_path my_bert --dataset_name glue \
        --dataset_config_name mrpc --text_column sentence1 --text_pair_column sentence2 --output_dir outputs/mrpc
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

import toolkit  # noqa: F401  (registers the model families with the Auto classes)
from toolkit import config
from toolkit.data import DataArguments, ListDataset, check_columns, length_grouped_order, load_raw_datasets
from toolkit.data.streaming import refuse_streaming
from toolkit.errors import UserError, exit_on_user_error
from toolkit.evaluation import classification_scores
from toolkit.evaluation.predict import (
    classification_collator,
    label_ids,
    label_key,
    predict_in_order,
    write_classification_outputs,
)
from toolkit.hub import CardInfo, hub_datasets, results_metrics
from toolkit.training import (
    CLASSIFICATION_DEFAULTS,
    SMALL_BERT_WIDTH,
    ProgressLogger,
    TrainingArguments,
    TrainState,
    apply_defaults,
    create_optimizer,
    create_scheduler,
    describe,
    evaluation_at_last_step,
    exit_if_preempted,
    finish_run,
    fit_length_to_model,
    load_checkpoint,
    load_full_state_dict,
    make_accelerator,
    model_config_dict,
    prepare_run,
    register_checkpoint_state,
    run_header,
    save_checkpoint,
    save_final_model,
    start_training_clock,
    total_training_steps,
    training_batches,
    training_finished,
)

METRICS = ("accuracy", "macro_f1", "matthews_correlation")


@dataclass
class ClassificationArguments:
    model_name_or_path: str = field(
        default="scratch",
        metadata={"help": "toolkit BERT/ELMo checkpoint, a HF BERT-compatible folder, or 'scratch' (BiLSTM)."},
    )
    text_pair_column: str | None = field(default=None, metadata={"help": "Second text column (sentence pairs)."})
    label_column: str = field(default="label", metadata={"help": "Column holding the labels (ints or strings)."})
    label_names: str | None = field(
        default=None,
        metadata={"help": "Comma-separated names of integer labels 0..K-1 (e.g. negative,positive) for id2label."},
    )
    max_seq_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens."})
    classifier_dropout: float | None = field(default=None, metadata={"help": "Head dropout (default: model's)."})
    hidden_dropout_prob: float | None = field(
        default=None,
        metadata={"help": "BERT: dropout inside the encoder (default: the checkpoint's; pretraining often uses 0)."},
    )
    freeze_embeddings: bool = field(
        default=False,
        metadata={
            "help": "BERT: keep the pretrained token embeddings fixed, so words absent from a small labelled set keep "
            "the place pretraining gave them next to the words that are updated."
        },
    )
    classifier_pooling: str | None = field(
        default=None,
        metadata={
            "help": "BERT: what the classifier reads: 'cls' (the pooled [CLS]), 'mean' (mean of the last layer) or "
            "'bilstm' (a BiLSTM with attention pooling over a learned mix of every layer, as ELMo's layers are used; "
            "default: the checkpoint's).",
            "choices": ["cls", "mean", "bilstm"],
        },
    )
    classifier_lstm_size: int | None = field(
        default=None, metadata={"help": "BERT with classifier_pooling bilstm: LSTM size per direction (default 256)."}
    )
    unpad_inputs: bool = field(
        default=True,
        metadata={"help": "BERT: drop padding before the encoder, attend within each sentence (same outputs)."},
    )
    elmo_full_finetune: bool = field(
        default=False, metadata={"help": "ELMo: fine-tune the biLM too (default: frozen biLM, learned scalar mix)."}
    )
    elmo_word_embeddings: bool = field(
        default=False,
        metadata={
            "help": "ELMo: concatenate a trainable word embedding (vocabulary of the training texts) with the ELMo "
            "vector at the task BiLSTM's input (Peters et al., 2018)."
        },
    )
    elmo_word_embedding_dim: int | None = field(
        default=None,
        metadata={
            "help": "ELMo: width of that word embedding (default: 128, or the biLM's projection_dim with bilm)."
        },
    )
    elmo_word_embeddings_init: str = field(
        default="random",
        metadata={
            "help": "ELMo: start the word channel from 'random' vectors or from the biLM's own context-free token "
            "vectors ('bilm'; as Peters et al. start theirs from GloVe).",
            "choices": ["random", "bilm"],
        },
    )
    scratch_vocab_size: int = field(
        default=20000, metadata={"help": "Scratch and the ELMo word channel: word vocabulary size."}
    )
    scratch_min_frequency: int = field(
        default=1, metadata={"help": "Scratch and the ELMo word channel: minimum count of a vocabulary word."}
    )
    scratch_embedding_size: int = field(default=300, metadata={"help": "Scratch: word embedding size."})
    scratch_hidden_size: int = field(default=256, metadata={"help": "Scratch: LSTM size per direction."})
    scratch_num_layers: int = field(default=1, metadata={"help": "Scratch: stacked LSTM layers."})
    scratch_pooling: str = field(default="attention", metadata={"help": "Scratch: attention, max or mean."})
    group_by_length: bool = field(
        default=False,
        metadata={"help": "Batch training examples of similar length (much less padding; same order every epoch)."},
    )
    metric_for_best_model: str = field(default="accuracy", metadata={"help": f"One of {', '.join(METRICS)}."})
    early_stopping_patience: int = field(
        default=0, metadata={"help": "Stop after N evaluations without improvement (0: never stop early)."}
    )
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Save and test the best validation model rather than the last one."}
    )

    def __post_init__(self):
        if self.metric_for_best_model not in METRICS:
            raise ValueError(
                f"metric_for_best_model '{self.metric_for_best_model}' is not one of {', '.join(METRICS)}"
            )
        if self.scratch_pooling not in ("attention", "max", "mean"):
            raise ValueError(f"scratch_pooling '{self.scratch_pooling}' is not one of attention, max, mean")


def parse_args(argv: list[str] | None = None):
    return config.parse_args(ClassificationArguments, DataArguments, TrainingArguments, args=argv, description=__doc__)


# --- helpers ---------------------------------------------------------------------------------------------------------


def label_vocabulary(dataset, label_column: str) -> tuple[dict[int, str], dict[str, int]]:
    """id2label / label2id from the training split: ClassLabel names when the dataset has them, else the sorted
    distinct values (numerically when they are all integers)."""
    feature = dataset.features.get(label_column) if dataset.features else None
    names = getattr(feature, "names", None)
    if names:
        return dict(enumerate(names)), {name: i for i, name in enumerate(names)}
    keys = sorted({label_key(v) for v in dataset[label_column]})
    if all(k.lstrip("-").isdigit() for k in keys):
        keys = sorted(keys, key=int)
    return dict(enumerate(keys)), {k: i for i, k in enumerate(keys)}


def named_labels(id2label: dict[int, str], label_names: str) -> tuple[dict[int, str], dict[str, int]]:
    """id2label / label2id with `--label_names` given to the integer labels 0..K-1 found in the training data."""
    names = [name.strip() for name in label_names.split(",")]
    keys = list(id2label.values())
    if len(set(names)) != len(names) or not all(names):
        raise UserError(f"label_names '{label_names}' must be distinct, non-empty, comma-separated names")
    integer = all(k.lstrip("-").isdigit() for k in keys) and [int(k) for k in keys] == list(range(len(keys)))
    if not integer and keys != names:
        raise UserError(f"label_names applies to integer labels 0..K-1; the training labels are {', '.join(keys)}")
    if len(names) != len(keys):
        raise UserError(
            f"label_names gives {len(names)} names but the training data has {len(keys)} labels ({', '.join(keys)})"
        )
    return dict(enumerate(names)), {name: i for i, name in enumerate(names)}


def encode_split(dataset, cls_args: ClassificationArguments, text_column: str, label2id, where: str) -> list[dict]:
    """Examples as dicts {text, text_pair?, label?, index}; labels mapped to ids (unlabelled GLUE test: -1 -> none)."""
    check_columns(dataset, [text_column, cls_args.text_pair_column], where)
    texts = dataset[text_column]
    pairs = dataset[cls_args.text_pair_column] if cls_args.text_pair_column else None
    labels = None
    if cls_args.label_column in (dataset.column_names or []):
        values = dataset[cls_args.label_column]
        feature = dataset.features.get(cls_args.label_column)
        if not (getattr(feature, "names", None) and all(v == -1 for v in values)):  # GLUE test sets are unlabelled
            if getattr(feature, "names", None):
                values = [feature.names[v] for v in values]
            labels = label_ids(values, label2id, where)
    items = []
    for i, text in enumerate(texts):
        item = {"text": text if text is not None else "", "index": i}
        if pairs is not None:
            item["text_pair"] = pairs[i] if pairs[i] is not None else ""
        if labels is not None:
            item["label"] = labels[i]
        items.append(item)
    return items


def load_splits(accelerator, cls_args, data_args, seed: int) -> tuple[dict, dict, dict]:
    """({split: encoded examples}, id2label, label2id) from the training, validation (held out of train when none
    is given) and, when given, test data; the main process reads first (the others then find the cache ready)."""
    with accelerator.main_process_first():
        raw = load_raw_datasets(data_args, need_validation=True, seed=seed)
    if "train" not in raw:
        raise UserError("no training data: pass --train_file or --dataset_name")
    columns = [data_args.text_column, cls_args.text_pair_column, cls_args.label_column]
    check_columns(raw["train"], columns, "the training data")
    id2label, label2id = label_vocabulary(raw["train"], cls_args.label_column)
    if cls_args.label_names:
        id2label, label2id = named_labels(id2label, cls_args.label_names)
    if len(id2label) < 2:
        raise UserError(f"the training data has a single label ({id2label[0]}); classification needs at least two")
    splits = {
        name: encode_split(raw[name], cls_args, data_args.text_column, label2id, f"the {name} data")
        for name in ("train", "validation", "test")
        if name in raw
    }
    return splits, id2label, label2id


def build_loaders(splits: dict, tokenizer, cls_args, training_args) -> tuple[DataLoader, dict[str, DataLoader]]:
    """(train loader, {split: evaluation loader}); `--group_by_length` batches training texts of similar length."""
    collate = classification_collator(tokenizer, cls_args.max_seq_length)
    train_items = splits["train"]
    if cls_args.group_by_length:
        lengths = [len(it["text"].split()) + len((it.get("text_pair") or "").split()) for it in train_items]
        order = length_grouped_order(lengths, training_args.per_device_train_batch_size, training_args.seed)
        train_items = [train_items[i] for i in order]
    train_loader = DataLoader(
        ListDataset(train_items), batch_size=training_args.per_device_train_batch_size,
        shuffle=not cls_args.group_by_length, collate_fn=collate, num_workers=training_args.dataloader_num_workers,
        pin_memory=torch.cuda.is_available(),
    )  # fmt: skip
    eval_loaders = {
        name: DataLoader(ListDataset(items), batch_size=training_args.per_device_eval_batch_size, collate_fn=collate)
        for name, items in splits.items()
        if name != "train"
    }
    return train_loader, eval_loaders


def build_model(cls_args: ClassificationArguments, train_items, id2label, label2id, output_dir, accelerator):
    """(model, tokenizer, backbone kind) for `--model_name_or_path`."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    labels = dict(num_labels=len(id2label), id2label=id2label, label2id=label2id)
    if cls_args.model_name_or_path == "scratch":
        from toolkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, train_word_tokenizer

        tokenizer_dir = os.path.join(output_dir, "scratch_tokenizer")
        if accelerator.is_main_process and not os.path.isfile(os.path.join(tokenizer_dir, "tokenizer.json")):
            texts = [item["text"] for item in train_items] + [item.get("text_pair") or "" for item in train_items]
            tokenizer = train_word_tokenizer(
                texts, vocab_size=cls_args.scratch_vocab_size, min_frequency=cls_args.scratch_min_frequency
            )
            tokenizer.save_pretrained(tokenizer_dir)  # reused on resume: the vocabulary must not change
        accelerator.wait_for_everyone()
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        config = BiLSTMConfig(
            vocab_size=len(tokenizer),
            embedding_size=cls_args.scratch_embedding_size,
            hidden_size=cls_args.scratch_hidden_size,
            num_layers=cls_args.scratch_num_layers,
            pooling=cls_args.scratch_pooling,
            pad_token_id=tokenizer.pad_token_id,
            **({"classifier_dropout": cls_args.classifier_dropout} if cls_args.classifier_dropout is not None else {}),
            **labels,
        )
        return BiLSTMForSequenceClassification(config), tokenizer, "scratch"

    path = cls_args.model_name_or_path
    if not os.path.isdir(path):
        raise UserError(f"model_name_or_path {path} is not a folder (or 'scratch')")
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        raise UserError(f"model_name_or_path {path} has no config.json")
    with open(config_file, encoding="utf-8") as f:
        model_type = json.load(f).get("model_type")
    if model_type == "bert":  # a Hugging Face BERT: convert to toolkit_bert once
        from toolkit.models.bert.convert import convert_hf_bert

        converted = os.path.join(output_dir, "converted_backbone")
        if accelerator.is_main_process and not os.path.isfile(os.path.join(converted, "config.json")):
            convert_hf_bert(path, converted)
        accelerator.wait_for_everyone()
        path, model_type = converted, "toolkit_bert"
    overrides = dict(labels)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if model_type == "toolkit_elmo":
        overrides["freeze_bilm"] = not cls_args.elmo_full_finetune
        if cls_args.elmo_word_embeddings and not getattr(tokenizer, "task_words", None):  # new task vocabulary
            texts = [item["text"] for item in train_items] + [item.get("text_pair") or "" for item in train_items]
            tokenizer.set_task_words(
                tokenizer.build_task_words(texts, cls_args.scratch_vocab_size, cls_args.scratch_min_frequency)
            )
            overrides["task_word_vocab_size"] = len(tokenizer.task_words)
            overrides["task_word_embedding_dim"] = cls_args.elmo_word_embedding_dim or (
                model_config_dict(path)["projection_dim"] if cls_args.elmo_word_embeddings_init == "bilm" else 128
            )
    if cls_args.classifier_dropout is not None:
        overrides["classifier_dropout"] = cls_args.classifier_dropout
    if cls_args.hidden_dropout_prob is not None:
        overrides["hidden_dropout_prob"] = overrides["attention_probs_dropout_prob"] = cls_args.hidden_dropout_prob
    for option in ("classifier_pooling", "classifier_lstm_size"):
        if getattr(cls_args, option) is not None:
            overrides[option] = getattr(cls_args, option)
    if model_type == "toolkit_bert":
        overrides["unpad_inputs"] = cls_args.unpad_inputs  # toolkit.models.bert: MosaicBERT/ModernBERT-style unpadding
    config = AutoConfig.from_pretrained(path, **overrides)
    model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
    if model_type == "toolkit_elmo" and hasattr(model, "set_bilm_frozen"):
        model.set_bilm_frozen(not cls_args.elmo_full_finetune)
        if "task_word_vocab_size" in overrides and cls_args.elmo_word_embeddings_init == "bilm":
            model.init_task_words_from_bilm(tokenizer)  # a new word channel, started from the biLM's token layer
    if cls_args.freeze_embeddings:
        model.get_input_embeddings().requires_grad_(False)
    kind = {"toolkit_bert": "bert", "toolkit_elmo": "elmo"}.get(model_type, model_type)
    return model, tokenizer, kind


def check_backbone_options(cls_args) -> None:
    """Options that only a BERT backbone has: one line, before the data is read."""
    path = cls_args.model_name_or_path
    model_type = "scratch" if path == "scratch" else model_config_dict(path).get("model_type")
    for option in ("freeze_embeddings", "hidden_dropout_prob", "classifier_pooling", "classifier_lstm_size"):
        if getattr(cls_args, option) not in (None, False) and model_type not in ("toolkit_bert", "bert"):
            raise UserError(f"{option} applies to BERT backbones, not {model_type}")
    if cls_args.classifier_lstm_size is not None:
        pooling = cls_args.classifier_pooling or model_config_dict(path).get("classifier_pooling")
        if pooling != "bilstm":
            raise UserError("classifier_lstm_size applies with classifier_pooling bilstm only")
        if cls_args.classifier_lstm_size < 1:
            raise UserError(f"classifier_lstm_size must be a positive integer, got {cls_args.classifier_lstm_size}")
    if cls_args.elmo_word_embeddings_init == "bilm":
        if model_type != "toolkit_elmo" or not cls_args.elmo_word_embeddings:
            raise UserError("elmo_word_embeddings_init bilm needs an ELMo backbone and --elmo_word_embeddings true")
        width = model_config_dict(path)["projection_dim"]
        if cls_args.elmo_word_embedding_dim not in (None, width):
            raise UserError(
                f"elmo_word_embedding_dim {cls_args.elmo_word_embedding_dim} must be the biLM's projection_dim "
                f"({width}) with elmo_word_embeddings_init bilm"
            )


def backbone_training_defaults(accelerator, model, kind: str, cls_args, training_args, num_examples: int) -> dict:
    """Set the learning rate, batch size, epochs, schedule... that suit the backbone, for the options the user did
    not set (`toolkit.training.backbone_defaults`); returns what was chosen."""
    elmo = (
        "elmo_finetune" if cls_args.elmo_full_finetune else "elmo_words" if cls_args.elmo_word_embeddings else "elmo"
    )
    row = {"elmo": elmo, "toolkit_bilstm": "scratch"}.get(kind, kind)
    if row == "bert" and model.config.hidden_size < SMALL_BERT_WIDTH:
        row = "bert_small"
    if row not in CLASSIFICATION_DEFAULTS:
        return {}
    chosen = apply_defaults(
        CLASSIFICATION_DEFAULTS[row], [cls_args, training_args], num_examples, accelerator.num_processes
    )
    accelerator.print(describe(row, chosen))
    return chosen


def evaluate(model, loader, accelerator, items) -> tuple[dict, dict]:
    """Metrics (+ loss) on a prepared loader, and the raw gathered outputs ordered like `items`."""
    result = predict_in_order(model, loader, accelerator, len(items))
    metrics = {}
    if "labels" in result:
        metrics = classification_scores(result["predictions"].tolist(), result["labels"].tolist())
        metrics["loss"] = result["loss"]
    model.train()
    return metrics, result


def evaluations_since_best(history: list[dict], key: str) -> int:
    """How many evaluations in `history` came after the best value of `key` (for early stopping after resume)."""
    values = [entry[key] for entry in history if key in entry]
    if not values:
        return 0
    best = max(range(len(values)), key=lambda i: (values[i], -i))
    return len(values) - 1 - best


def model_card(cls_args, data_args, output_dir: str, id2label: dict, kind: str, results: dict):
    """The model card's `CardInfo` and `CardMetric`s."""
    if kind == "scratch":
        backbone = "a BiLSTM-attention classifier trained from scratch"
    else:
        backbone = f"`{cls_args.model_name_or_path}` ({kind}) fine-tuned"
    card = CardInfo(
        title=os.path.basename(os.path.abspath(output_dir)),
        summary=f"Text classifier ({len(id2label)} labels: {', '.join(id2label.values())}): {backbone}.",
        datasets=hub_datasets(data_args),
        tags=["text-classification", kind],
        pipeline_tag="text-classification",
        base_model=None if kind == "scratch" else cls_args.model_name_or_path,
    )
    return card, results_metrics("text-classification", results, METRICS, data_args)


def write_predictions(output_dir: str, splits: dict, outputs: dict, results: dict, id2label: dict) -> None:
    """`{split}_predictions.tsv`, `{split}_confusion_matrix.png` and `{split}_results.json` of the final model."""
    for name, out in outputs.items():
        items = splits[name]
        texts = [it["text"] if "text_pair" not in it else f"{it['text']} ||| {it['text_pair']}" for it in items]
        gold = out["labels"].tolist() if "labels" in out else None
        split_metrics = {k[len(name) + 1 :]: v for k, v in results.items() if k.startswith(f"{name}_")}
        write_classification_outputs(
            output_dir, name, texts, gold, out["predictions"].tolist(), out["probabilities"], id2label,
            split_metrics if gold is not None else None,
        )  # fmt: skip


# --- main ------------------------------------------------------------------------------------------------------------


@exit_on_user_error
def main(cls_args: ClassificationArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict:
    # --- accelerator, seed, resume ---
    refuse_streaming(data_args, "finetune_classification.py")
    accelerator = make_accelerator(training_args)  # also seeds every RNG with training_args.seed
    # output_dir checks (overwrite, leftovers), options compared with the checkpoint's
    resume = prepare_run(accelerator, training_args, cls_args, data_args, training_args)
    start_time = time.perf_counter()
    check_backbone_options(cls_args)
    if cls_args.model_name_or_path != "scratch":
        cls_args.max_seq_length = fit_length_to_model(cls_args, cls_args.model_name_or_path)
    output_dir = training_args.output_dir
    os.makedirs(output_dir, exist_ok=True)

    # --- data ---
    splits, id2label, label2id = load_splits(accelerator, cls_args, data_args, training_args.seed)

    # --- model ---
    model, tokenizer, kind = build_model(cls_args, splits["train"], id2label, label2id, output_dir, accelerator)
    backbone_defaults = backbone_training_defaults(
        accelerator, model, kind, cls_args, training_args, len(splits["train"])
    )
    run_config = {**config.to_dict(cls_args, data_args, training_args), "backbone_defaults": backbone_defaults}
    model = model.to(accelerator.device)
    if training_args.torch_compile:
        model.compile()  # in place: same module class and state_dict keys

    # --- batches ---
    train_loader, eval_loaders = build_loaders(splits, tokenizer, cls_args, training_args)

    # --- optimizer and schedule ---
    optimizer = create_optimizer(model, training_args)
    total_steps, num_epochs = total_training_steps(training_args, len(train_loader) // accelerator.num_processes)
    scheduler = create_scheduler(optimizer, training_args, total_steps)

    # --- prepare ---
    model, optimizer, train_loader, *prepared = accelerator.prepare(
        model, optimizer, train_loader, *eval_loaders.values()
    )
    eval_loaders = dict(zip(eval_loaders, prepared))
    register_checkpoint_state(accelerator, scheduler=scheduler)  # JSON, not pickle
    state = load_checkpoint(accelerator, resume) if resume else TrainState()
    if accelerator.is_main_process:
        accelerator.init_trackers("finetune_classification", config=run_config)

    # --- training loop, with early stopping on the validation metric ---
    run_header(
        accelerator, "finetune_classification", training_args, model=model, total_steps=total_steps,
        num_epochs=num_epochs, data_sizes={n: len(items) for n, items in splits.items()}, labels=id2label,
        start_step=state.global_step,
    )  # fmt: skip
    progress = ProgressLogger(accelerator, total_steps, state, training_args.logging_steps)
    best_dir = os.path.join(output_dir, "best_model")
    stale = evaluations_since_best(state.log_history, f"eval_{cls_args.metric_for_best_model}")

    def run_validation() -> bool:
        """Evaluate, keep the best model, return True when early stopping says stop."""
        nonlocal stale
        metrics, _ = evaluate(model, eval_loaders["validation"], accelerator, splits["validation"])
        progress.record({f"eval_{k}": v for k, v in metrics.items()})
        value = metrics[cls_args.metric_for_best_model]
        if state.best_metric is None or value > state.best_metric:
            state.best_metric, state.best_checkpoint, stale = value, best_dir, 0
            if cls_args.load_best_model_at_end:
                save_final_model(accelerator, model, tokenizer, best_dir, metrics=metrics)
        else:
            stale += 1
        return bool(cls_args.early_stopping_patience) and stale >= cls_args.early_stopping_patience

    model.train()
    start_training_clock(scheduler)  # --max_time_minutes budgets the training loop only
    for batch in training_batches(accelerator, train_loader, state, num_epochs):
        batch.pop("index")
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and training_args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), training_args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        progress.update(loss, n_tokens=batch["attention_mask"].sum())
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        state.global_step += 1
        progress.step(scheduler.get_last_lr()[0])
        stop = False
        if training_args.eval_steps and state.global_step % training_args.eval_steps == 0:
            stop = run_validation()
        if training_args.save_steps and state.global_step % training_args.save_steps == 0:
            save_checkpoint(accelerator, output_dir, state, training_args.save_total_limit)
        exit_if_preempted(accelerator, training_args, progress)  # SIGTERM / SIGINT / SIGUSR1: checkpoint, exit
        if stop or training_finished(state, total_steps, scheduler):
            break
    progress.finish(scheduler.get_last_lr()[0])
    if evaluation_at_last_step(state) is None:
        run_validation()
    train_seconds = time.perf_counter() - start_time

    # --- the best model, evaluated on validation and test ---
    if cls_args.load_best_model_at_end and os.path.isfile(os.path.join(best_dir, "config.json")):
        accelerator.wait_for_everyone()
        load_full_state_dict(accelerator, model, load_file(os.path.join(best_dir, "model.safetensors")))
    results = {
        "train_runtime": round(train_seconds, 1), "train_loss": progress.last_loss, "global_step": state.global_step,
        "backbone": kind,
    }  # fmt: skip
    outputs = {}
    for name in eval_loaders:
        metrics, outputs[name] = evaluate(model, eval_loaders[name], accelerator, splits[name])
        results.update({f"{name}_{k}": v for k, v in metrics.items()})
        results[f"{name}_samples"] = len(splits[name])
    model.eval()

    # --- finish: model, tokenizer, predictions, metrics, log history, model card, push ---
    card, card_metrics = model_card(cls_args, data_args, output_dir, id2label, kind, results)
    return finish_run(
        accelerator, training_args, model, tokenizer, results=results, log_history=state.log_history,
        run_config=run_config, card=card, card_metrics=card_metrics,
        write_outputs=lambda _: write_predictions(output_dir, splits, outputs, results, id2label),
    )  # fmt: skip


if __name__ == "__main__":
    main(*parse_args())
