"""Train an encoder-decoder for translation or summarization: the Transformer (Vaswani et al., 2017) or an RNN with
attention (Bahdanau et al., 2015; Luong et al., 2015), optionally with a BERT-initialised encoder (Liu & Lapata, 2019).

Data (one of):
- the embedded demo data: `--dataset_name demo --dataset_config_name summarization` (docstring body -> summary line);
- a Hub dataset: `--dataset_name wmt16 --dataset_config_name de-en --source_lang de --target_lang en` (a
  `translation` column of {lang: text}), or `--text_column document --summary_column summary`;
- local parallel text as fairseq users expect: `--train_file data/train --source_lang de --target_lang en` reads the
  line-aligned `data/train.de` and `data/train.en` (`.gz` ok; the same for `--validation_file` / `--test_file`);
  files of different lengths are an error naming both files and their line counts;
- local jsonl/json/csv/tsv (gzip ok) with named fields: `--text_column dialogue --summary_column summary`, or the
  columns named by `--source_lang` / `--target_lang`.

Tokenizer: a joint byte-level BPE trained on source + target training text (`--vocab_size`) unless
`--tokenizer_name` gives one. With `--init_encoder_from BERT_DIR` the encoder is copied from that BERT checkpoint
(Hugging Face `bert` or toolkit `toolkit_bert`), the source side uses the BERT tokenizer (saved to
`<output_dir>/source_tokenizer`) and a BPE is trained on the target side only.

Training: pairs longer than `--max_source_length` / `--max_target_length` tokens are truncated (or dropped with
`--drop_long_pairs`); `--max_tokens N` builds batches by token count from length-sorted buckets (fairseq-style;
otherwise `--per_device_train_batch_size` sentences); label smoothing (`--label_smoothing`); `--lr_scheduler_type
inverse_sqrt` (Vaswani et al.) or `linear`; `--average_last_checkpoints K` averages the weights of the last K
checkpoints at the end (Vaswani et al. averaged the last 5/20).

Evaluation: validation loss and generation metrics every `--eval_steps` (greedy, `--eval_num_beams`), then the
final model generates for validation and test with `--num_beams` / `--length_penalty`: sacreBLEU + chrF for
translation, ROUGE-1/2/L/Lsum for summarization (offline metric modules of `toolkit.evaluation`). Outputs in
`--output_dir`: model + code + tokenizer(s), `{validation,test}_predictions.jsonl`, `all_results.json`, `README.md`
(model card with the results); `--push_to_hub` uploads the folder.

    # demo data (docstring -> summary line), small Transformer, CPU, a few minutes
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/finetune_seq2seq.py \
        --config recipes/configs/summarization/quickstart.yaml
    # Multi30k de->en, small Transformer / RNN with additive attention
    accelerate launch recipes/finetune_seq2seq.py --config recipes/configs/translation/multi30k_transformer_small.yaml
    accelerate launch recipes/finetune_seq2seq.py --config recipes/configs/translation/multi30k_rnn_additive.yaml
    # DialogSum with a BERT-initialised encoder
    accelerate launch recipes/finetune_seq2seq.py --config recipes/configs/summarization/dialogsum_bert2transformer.yaml
    # WMT-sized Transformer base on 8 GPUs, bf16
    accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16 recipes/finetune_seq2seq.py \
        --config recipes/configs/translation/wmt_transformer_base.yaml
"""

import contextlib
import functools
import glob
import json
import os
import random
import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorForSeq2Seq

import toolkit  # noqa: F401  (registers the model families with the Auto classes)
from toolkit import config
from toolkit.data import (
    DataArguments,
    ListDataset,
    TokenBatchSampler,
    batch_iterator,
    check_columns,
    is_parallel_prefix,
    load_raw_datasets,
    read_parallel,
    train_bpe,
)
from toolkit.data.streaming import refuse_streaming
from toolkit.errors import UserError, exit_on_user_error
from toolkit.evaluation import task_scores
from toolkit.evaluation.predict import generate_texts
from toolkit.hub import CardInfo, hub_datasets, results_metrics
from toolkit.training import (
    SEQ2SEQ_DEFAULTS,
    ProgressLogger,
    TrainingArguments,
    TrainState,
    apply_defaults,
    create_optimizer,
    create_scheduler,
    describe,
    exit_if_preempted,
    finish_run,
    list_checkpoints,
    load_checkpoint,
    load_full_state_dict,
    make_accelerator,
    prepare_run,
    register_checkpoint_state,
    run_header,
    save_checkpoint,
    sharded_checkpoints,
    start_training_clock,
    total_training_steps,
    training_batches,
    training_finished,
)

TASKS = ("translation", "summarization")


@dataclass
class Seq2SeqModelArguments:
    model_type: str = field(default="transformer", metadata={"help": "transformer or rnn."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue from a saved toolkit seq2seq model folder (default: from scratch)."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer folder to use (default: train a joint BPE on the training data)."}
    )
    vocab_size: int = field(default=8000, metadata={"help": "Size of the BPE vocabulary trained when none is given."})
    init_encoder_from: str | None = field(
        default=None, metadata={"help": "BERT checkpoint folder whose weights initialise the Transformer encoder."}
    )
    d_model: int = field(default=256, metadata={"help": "Transformer: layer width."})
    encoder_layers: int = field(default=3, metadata={"help": "Encoder layers (Transformer and RNN)."})
    decoder_layers: int = field(default=3, metadata={"help": "Decoder layers (Transformer and RNN)."})
    attention_heads: int = field(default=4, metadata={"help": "Transformer: heads per attention layer."})
    ffn_dim: int = field(default=1024, metadata={"help": "Transformer: inner size of the feed-forward network."})
    normalize_before: bool = field(default=False, metadata={"help": "Transformer: pre-LN instead of post-LN."})
    position_embedding_type: str = field(default="sinusoidal", metadata={"help": "Transformer: sinusoidal|learned."})
    share_embeddings: bool = field(
        default=True, metadata={"help": "Transformer: one embedding matrix for source, target and output."}
    )
    dropout: float = field(default=0.1, metadata={"help": "Dropout probability."})
    attention_dropout: float = field(default=0.0, metadata={"help": "Transformer: dropout on attention weights."})
    label_smoothing: float = field(default=0.1, metadata={"help": "Label smoothing of the loss."})
    attention_type: str = field(
        default="additive",
        metadata={"help": "RNN: dot, bilinear, additive, or none (the decoder sees only the final encoder state)."},
    )
    cell_type: str = field(default="gru", metadata={"help": "RNN: gru or lstm."})
    embedding_size: int = field(default=256, metadata={"help": "RNN: token embedding size."})
    encoder_hidden_size: int = field(default=256, metadata={"help": "RNN: encoder state size per direction."})
    hidden_size: int = field(default=512, metadata={"help": "RNN: decoder state size."})
    input_feeding: bool = field(default=True, metadata={"help": "RNN: feed the attentional vector back in."})

    def __post_init__(self):
        if self.model_type not in ("transformer", "rnn"):
            raise ValueError(f"model_type '{self.model_type}' is not one of transformer, rnn")
        if self.attention_type not in ("none", "dot", "bilinear", "additive"):
            raise ValueError(f"attention_type '{self.attention_type}' is not one of none, dot, bilinear, additive")
        if self.init_encoder_from and self.model_type != "transformer":
            raise ValueError("init_encoder_from (BERT warm start) needs model_type transformer")


@dataclass
class Seq2SeqDataArguments:
    task: str | None = field(
        default=None, metadata={"help": "translation or summarization (default: from --summary_column / langs)."}
    )
    source_lang: str | None = field(default=None, metadata={"help": "Source language code, e.g. de."})
    target_lang: str | None = field(default=None, metadata={"help": "Target language code, e.g. en."})
    summary_column: str | None = field(default=None, metadata={"help": "Column holding the target summary."})
    max_source_length: int = field(default=128, metadata={"help": "Source tokens kept (longer: truncated)."})
    max_target_length: int = field(default=128, metadata={"help": "Target tokens kept (longer: truncated)."})
    drop_long_pairs: bool = field(
        default=False, metadata={"help": "Drop training pairs over the length limits instead of truncating them."}
    )
    max_tokens: int | None = field(
        default=None, metadata={"help": "Batch by token count (source or target, padded) instead of sentences."}
    )
    eval_num_beams: int = field(default=1, metadata={"help": "Beam size of the generation during training."})
    num_beams: int = field(default=4, metadata={"help": "Beam size of the final generation."})
    length_penalty: float = field(default=1.0, metadata={"help": "Beam search length penalty (exponent)."})
    no_repeat_ngram_size: int = field(default=0, metadata={"help": "Forbid repeating n-grams of this size."})
    max_new_tokens: int = field(default=128, metadata={"help": "Generation length limit."})
    average_last_checkpoints: int = field(
        default=0, metadata={"help": "Average the weights of the last K checkpoints for the final model (0: off)."}
    )
    final_eval_splits: str = field(
        default="validation,test", metadata={"help": "Splits the final model generates for and is scored on."}
    )

    def __post_init__(self):
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 (or unset: batch by sentences), got {self.max_tokens}")
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"task '{self.task}' is not one of {', '.join(TASKS)}")
        unknown = set(self.final_eval_splits.split(",")) - {"", "validation", "test"}
        if unknown:
            raise ValueError(f"final_eval_splits: unknown split(s) {', '.join(sorted(unknown))}")


def parse_args(argv: list[str] | None = None):
    return config.parse_args(
        Seq2SeqModelArguments, Seq2SeqDataArguments, DataArguments, TrainingArguments, args=argv, description=__doc__
    )


# --- data ------------------------------------------------------------------------------------------------------------


def infer_task(seq_args: Seq2SeqDataArguments, data_args: DataArguments) -> str:
    if seq_args.task:
        return seq_args.task
    if seq_args.summary_column or data_args.dataset_config_name == "summarization":
        return "summarization"
    if seq_args.source_lang and seq_args.target_lang:
        return "translation"
    raise UserError("cannot tell the task: pass --task, --summary_column, or --source_lang and --target_lang")


def _pairs_from_dataset(dataset, seq_args, data_args, where: str) -> list[tuple[str, str]]:
    columns = dataset.column_names or []
    if "translation" in columns and seq_args.source_lang and seq_args.target_lang:  # Hub translation datasets
        rows = dataset["translation"]
        return [(r[seq_args.source_lang], r[seq_args.target_lang]) for r in rows]
    if seq_args.summary_column:
        source_column, target_column = data_args.text_column, seq_args.summary_column
    elif data_args.dataset_name == "demo":
        source_column, target_column = "document", "summary"
    else:
        source_column, target_column = seq_args.source_lang, seq_args.target_lang
    if target_column not in columns and f"{target_column}1" in columns:  # several references (DialogSum test)
        print(f"{where}: no '{target_column}' column, scoring against the first reference '{target_column}1'")
        target_column = f"{target_column}1"
    check_columns(dataset, [source_column, target_column], where)
    return list(zip(dataset[source_column], dataset[target_column]))


def load_pairs(seq_args: Seq2SeqDataArguments, data_args: DataArguments, seed: int, accelerator=None) -> dict:
    """{"train", "validation", "test"?: [(source, target), ...]} from any of the supported inputs; with an
    `accelerator`, the main process reads datasets first (the others then find the cache ready)."""
    options = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
    given = {split: path for split, path in options.items() if path}
    parallel = {s: p for s, p in given.items() if is_parallel_prefix(p, seq_args.source_lang, seq_args.target_lang)}
    if parallel:
        for split, path in given.items():
            if split not in parallel and not os.path.exists(path):
                raise UserError(
                    f"--{split}_file {path}: no such file or folder, and no parallel files {path}.{seq_args.source_lang}"
                    f" / {path}.{seq_args.target_lang} either"
                )
        if len(parallel) != len(given):
            raise UserError("mix of parallel-text prefixes and other files: give every split in the same format")
        pairs = {
            s: read_parallel(p, seq_args.source_lang, seq_args.target_lang, f"--{s}_file") for s, p in given.items()
        }
        if "train" not in pairs:
            raise UserError("no training data: pass --train_file")
        if "validation" not in pairs:  # hold out a seeded slice of train
            order = list(range(len(pairs["train"])))
            random.Random(seed).shuffle(order)
            n = max(1, len(order) * data_args.validation_split_percentage // 100)
            held = set(order[:n])
            pairs["validation"] = [p for i, p in enumerate(pairs["train"]) if i in held]
            pairs["train"] = [p for i, p in enumerate(pairs["train"]) if i not in held]
        if data_args.max_train_samples:
            pairs["train"] = pairs["train"][: data_args.max_train_samples]
        for split in ("validation", "test"):
            if data_args.max_eval_samples and split in pairs:
                pairs[split] = pairs[split][: data_args.max_eval_samples]
    else:
        with accelerator.main_process_first() if accelerator is not None else contextlib.nullcontext():
            raw = load_raw_datasets(data_args, need_validation=True, seed=seed)
        if "train" not in raw:
            raise UserError("no training data: pass --train_file or --dataset_name")
        pairs = {s: _pairs_from_dataset(raw[s], seq_args, data_args, f"the {s} data") for s in raw}
    return {s: [(src or "", tgt or "") for src, tgt in p] for s, p in pairs.items()}


def encode_pairs(pairs, source_tokenizer, target_tokenizer, seq_args, drop_long: bool) -> list[dict]:
    """Token ids per pair: {"input_ids", "labels", "index"}; over-long pairs truncated (or dropped)."""
    sources = source_tokenizer([s for s, _ in pairs], add_special_tokens=True)["input_ids"]
    targets = target_tokenizer(text_target=[t for _, t in pairs], add_special_tokens=True)["input_ids"]
    items = []
    for i, (src, tgt) in enumerate(zip(sources, targets)):
        if len(src) <= 1 or len(tgt) <= 1:  # empty side: only the end-of-sequence token
            continue
        too_long = len(src) > seq_args.max_source_length or len(tgt) > seq_args.max_target_length
        if too_long and drop_long:
            continue
        src = src[: seq_args.max_source_length - 1] + src[-1:] if len(src) > seq_args.max_source_length else src
        tgt = tgt[: seq_args.max_target_length - 1] + tgt[-1:] if len(tgt) > seq_args.max_target_length else tgt
        items.append({"input_ids": src, "labels": tgt, "index": i})
    return items


def encode_splits(pairs: dict, source_tokenizer, target_tokenizer, seq_args) -> dict[str, list[dict]]:
    """Token ids of every split; over-long training pairs are truncated, or dropped with --drop_long_pairs."""
    encoded = {
        split: encode_pairs(p, source_tokenizer, target_tokenizer, seq_args, drop_long=seq_args.drop_long_pairs and split == "train")
        for split, p in pairs.items()
    }  # fmt: skip
    if not encoded["train"]:
        raise UserError("no training pairs left after tokenization and length filtering")
    return encoded


def build_loaders(encoded: dict, source_tokenizer, sampler, training_args) -> tuple[DataLoader, DataLoader]:
    """(train loader, validation loader): sources right-padded with the encoder's pad id, labels with -100 (ignored
    by the loss); training batches of `per_device_train_batch_size` pairs, or the `TokenBatchSampler`'s."""
    collate = DataCollatorForSeq2Seq(source_tokenizer, label_pad_token_id=-100)
    by_count = {} if sampler else dict(batch_size=training_args.per_device_train_batch_size, shuffle=True)
    train_loader = DataLoader(
        ListDataset(encoded["train"]), batch_sampler=sampler, **by_count, collate_fn=collate,
        num_workers=training_args.dataloader_num_workers, pin_memory=torch.cuda.is_available(),
    )  # fmt: skip
    eval_loader = DataLoader(
        ListDataset(encoded["validation"]), batch_size=training_args.per_device_eval_batch_size, collate_fn=collate
    )
    return train_loader, eval_loader


def checkpoints_to_average(accelerator, k: int) -> int:
    """--average_last_checkpoints, or 1 (no averaging) where the checkpoints hold sharded weights."""
    if k > 1 and sharded_checkpoints(accelerator):
        accelerator.print(
            f"average_last_checkpoints={k} is skipped: under {accelerator.distributed_type.value} the checkpoints "
            "hold sharded weights; the final weights are used"
        )
        return 1
    return k


# --- model -----------------------------------------------------------------------------------------------------------


def build_tokenizers(model_args, pairs, output_dir, accelerator):
    """(source tokenizer, target tokenizer); trained ones are saved under output_dir and reused on resume."""
    from transformers import AutoTokenizer

    if model_args.tokenizer_name or model_args.model_name_or_path:
        target = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path)
        source_dir = os.path.join(model_args.model_name_or_path or "", "source_tokenizer")
        source = AutoTokenizer.from_pretrained(source_dir) if os.path.isdir(source_dir) else target
        return source, target
    tokenizer_dir = os.path.join(output_dir, "bpe_tokenizer")
    if accelerator.is_main_process and not os.path.isfile(os.path.join(tokenizer_dir, "tokenizer.json")):
        if model_args.init_encoder_from:  # the source side keeps BERT's WordPiece
            texts = batch_iterator([{"t": t} for _, t in pairs], "t")
        else:
            texts = batch_iterator([{"s": s, "t": t} for s, t in pairs], ["s", "t"])
        train_bpe(texts, vocab_size=model_args.vocab_size).save_pretrained(tokenizer_dir)
    accelerator.wait_for_everyone()
    target = AutoTokenizer.from_pretrained(tokenizer_dir)
    source = AutoTokenizer.from_pretrained(model_args.init_encoder_from) if model_args.init_encoder_from else target
    return source, target


def build_model(model_args, source_tokenizer, target_tokenizer, accelerator):
    from transformers import AutoModelForSeq2SeqLM

    from toolkit.models.rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
    from toolkit.models.transformer import TransformerSeq2SeqConfig, TransformerSeq2SeqForConditionalGeneration

    if model_args.model_name_or_path:
        return AutoModelForSeq2SeqLM.from_pretrained(model_args.model_name_or_path)
    specials = dict(
        pad_token_id=target_tokenizer.pad_token_id,
        bos_token_id=target_tokenizer.bos_token_id,
        eos_token_id=target_tokenizer.eos_token_id,
        decoder_start_token_id=target_tokenizer.bos_token_id,
    )
    if model_args.model_type == "rnn":
        config = RNNSeq2SeqConfig(
            vocab_size=len(target_tokenizer),
            encoder_vocab_size=len(source_tokenizer) if source_tokenizer is not target_tokenizer else None,
            embedding_size=model_args.embedding_size,
            encoder_hidden_size=model_args.encoder_hidden_size,
            hidden_size=model_args.hidden_size,
            encoder_layers=model_args.encoder_layers,
            decoder_layers=model_args.decoder_layers,
            cell_type=model_args.cell_type,
            attention_type=model_args.attention_type,
            input_feeding=model_args.input_feeding,
            dropout=model_args.dropout,
            label_smoothing=model_args.label_smoothing,
            **specials,
        )
        return RNNSeq2SeqForConditionalGeneration(config)
    common = dict(
        vocab_size=len(target_tokenizer),
        d_model=model_args.d_model,
        encoder_layers=model_args.encoder_layers,
        decoder_layers=model_args.decoder_layers,
        encoder_attention_heads=model_args.attention_heads,
        decoder_attention_heads=model_args.attention_heads,
        encoder_ffn_dim=model_args.ffn_dim,
        decoder_ffn_dim=model_args.ffn_dim,
        normalize_before=model_args.normalize_before,
        position_embedding_type=model_args.position_embedding_type,
        dropout=model_args.dropout,
        attention_dropout=model_args.attention_dropout,
        label_smoothing=model_args.label_smoothing,
        share_embeddings=model_args.share_embeddings,
        tie_word_embeddings=True,
        **specials,
    )
    if not model_args.init_encoder_from:
        return TransformerSeq2SeqForConditionalGeneration(TransformerSeq2SeqConfig(**common))

    from toolkit.models.transformer.warm_start import load_bert_encoder, warm_start_encoder

    path = model_args.init_encoder_from
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise UserError(f"init_encoder_from {path} is not a checkpoint folder (no config.json)")
    try:
        encoder_state, encoder_kwargs = load_bert_encoder(path)
    except (ValueError, KeyError) as err:
        raise UserError(f"init_encoder_from {path}: {err}") from None
    common.update(encoder_kwargs)  # encoder = BERT's shape; decoder width = BERT's hidden size
    common["encoder_pad_token_id"] = source_tokenizer.pad_token_id
    model = TransformerSeq2SeqForConditionalGeneration(TransformerSeq2SeqConfig(**common))
    warm_start_encoder(model, encoder_state)
    accelerator.print(f"encoder initialised from {model_args.init_encoder_from}")
    return model


def average_checkpoints(paths: list[str]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model weights saved in `paths` (accelerate checkpoints)."""
    from safetensors.torch import load_file

    total = None
    for path in paths:
        files = sorted(glob.glob(os.path.join(path, "model*.safetensors")))
        if not files:
            raise UserError(f"checkpoint {path} holds no model*.safetensors to average")
        weights = load_file(files[0])
        if total is None:
            total = {k: v.double().clone() for k, v in weights.items()}
        else:
            for k, v in weights.items():
                total[k] += v.double()
    return {k: (v / len(paths)).float() for k, v in total.items()}


# --- evaluation ------------------------------------------------------------------------------------------------------


def backbone_training_defaults(accelerator, model_args, seq_args, training_args, num_examples: int, sampler) -> dict:
    """Set the learning rate, batch size and schedule that suit the model, for the options the user did not set
    (`toolkit.training.backbone_defaults`); returns what was chosen."""
    row = "bert2transformer" if model_args.init_encoder_from else model_args.model_type
    chosen = apply_defaults(
        SEQ2SEQ_DEFAULTS[row], [model_args, seq_args, training_args], num_examples, accelerator.num_processes,
        skip_if_set={"per_device_train_batch_size": ("max_tokens",)},
        batches_per_epoch=len(sampler) if sampler is not None else None,
    )  # fmt: skip
    accelerator.print(describe(row, chosen))
    return chosen


def token_batch_sampler(train: list[dict], max_tokens: int | None, seed: int) -> TokenBatchSampler | None:
    """Batches by token count (--max_tokens: the longer of source and target counts), or None: by sentences."""
    if not max_tokens:
        return None
    return TokenBatchSampler([max(len(it["input_ids"]), len(it["labels"])) for it in train], max_tokens, seed=seed)


def generate_and_score(
    accelerator, model, source_tokenizer, target_tokenizer, pairs, task, seq_args, batch_size: int, split: str,
    num_beams: int,
) -> tuple[list[str], dict]:  # fmt: skip
    """Predictions for a split and their scores (sacreBLEU + chrF, or ROUGE)."""
    predictions = generate_texts(
        model, source_tokenizer, [s for s, _ in pairs[split]], accelerator, batch_size, seq_args.max_source_length,
        target_tokenizer=target_tokenizer, num_beams=num_beams, length_penalty=seq_args.length_penalty,
        do_sample=False, no_repeat_ngram_size=seq_args.no_repeat_ngram_size, max_new_tokens=seq_args.max_new_tokens,
    )  # fmt: skip
    return predictions, task_scores(task, predictions, [t for _, t in pairs[split]])


@torch.no_grad()
def validation_loss(model, loader, accelerator) -> float:
    model.eval()
    total, count = torch.zeros((), device=accelerator.device), torch.zeros((), device=accelerator.device)
    for batch in loader:
        batch.pop("index")
        loss = model(**batch).loss
        n = (batch["labels"] != -100).sum()
        total += loss.detach().float() * n
        count += n
    model.train()
    total, count = accelerator.reduce(total, reduction="sum"), accelerator.reduce(count, reduction="sum")
    return (total / count.clamp(min=1)).item()


def average_last_checkpoints(accelerator, model, state, output_dir: str, k: int) -> int:
    """Load the mean weights of the last `k` checkpoints (the final weights among them) into `model`; returns how
    many were averaged."""
    checkpoints = list_checkpoints(output_dir)
    if not checkpoints or not checkpoints[-1].endswith(f"step-{state.global_step:08d}"):
        save_checkpoint(accelerator, output_dir, state, None)  # the final weights take part
        checkpoints = list_checkpoints(output_dir)
    chosen = checkpoints[-k:]
    accelerator.wait_for_everyone()
    load_full_state_dict(accelerator, model, average_checkpoints(chosen), strict=False)
    accelerator.unwrap_model(model).tie_weights()
    accelerator.print(f"averaged the weights of {len(chosen)} checkpoints: {', '.join(map(os.path.basename, chosen))}")
    return len(chosen)


def model_card(task: str, model_args, seq_args, data_args, output_dir: str, model, results: dict):
    """The model card's `CardInfo` and `CardMetric`s."""
    if model_args.model_type == "transformer":
        what = f"Transformer ({model_args.encoder_layers}+{model_args.decoder_layers} layers, d_model {model.config.d_model})"
    else:
        what = f"RNN encoder-decoder ({model_args.cell_type}, {model_args.attention_type} attention)"
    if model_args.init_encoder_from:
        what += f" with the encoder initialised from `{model_args.init_encoder_from}`"
    card = CardInfo(
        title=os.path.basename(os.path.abspath(output_dir)),
        summary=f"{task.capitalize()} model: {what}, trained with `recipes/finetune_seq2seq.py`.",
        datasets=hub_datasets(data_args),
        tags=[task, "seq2seq", model_args.model_type],
        pipeline_tag="translation" if task == "translation" else "summarization",
        language=[seq_args.source_lang, seq_args.target_lang] if task == "translation" else "en",
    )
    metric_names = ("bleu", "chrf") if task == "translation" else ("rouge1", "rouge2", "rougeL", "rougeLsum")
    return card, results_metrics(task, results, metric_names, data_args)


def write_outputs(output_dir: str, seq_args, source_tokenizer, target_tokenizer, pairs, predictions, model) -> None:
    """The generation settings of the final evaluation, the source tokenizer (when it is not the target's) and
    `{split}_predictions.jsonl`."""
    model.generation_config.update(
        num_beams=seq_args.num_beams, length_penalty=seq_args.length_penalty,
        no_repeat_ngram_size=seq_args.no_repeat_ngram_size, max_new_tokens=seq_args.max_new_tokens,
    )  # fmt: skip
    model.generation_config.save_pretrained(output_dir)
    if source_tokenizer is not target_tokenizer:
        source_tokenizer.save_pretrained(os.path.join(output_dir, "source_tokenizer"))
    for split, texts in predictions.items():
        with open(os.path.join(output_dir, f"{split}_predictions.jsonl"), "w", encoding="utf-8") as f:
            for (source, reference), prediction in zip(pairs[split], texts):
                f.write(json.dumps({"source": source, "prediction": prediction, "reference": reference}) + "\n")


# --- main ------------------------------------------------------------------------------------------------------------


@exit_on_user_error
def main(
    model_args: Seq2SeqModelArguments,
    seq_args: Seq2SeqDataArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> dict:
    # --- accelerator, seed, resume ---
    refuse_streaming(data_args, "finetune_seq2seq.py")
    accelerator = make_accelerator(training_args)  # also seeds every RNG with training_args.seed
    seq_args.average_last_checkpoints = checkpoints_to_average(accelerator, seq_args.average_last_checkpoints)
    # output_dir checks (overwrite, leftovers), options compared with the checkpoint's
    resume = prepare_run(accelerator, training_args, model_args, seq_args, data_args, training_args)
    start_time = time.perf_counter()
    output_dir = training_args.output_dir

    # --- data and tokenizers ---
    task = infer_task(seq_args, data_args)
    pairs = load_pairs(seq_args, data_args, seed=training_args.seed, accelerator=accelerator)
    os.makedirs(output_dir, exist_ok=True)  # after the inputs are checked: a bad one leaves nothing behind
    source_tokenizer, target_tokenizer = build_tokenizers(model_args, pairs["train"], output_dir, accelerator)
    encoded = encode_splits(pairs, source_tokenizer, target_tokenizer, seq_args)
    sampler = token_batch_sampler(encoded["train"], seq_args.max_tokens, training_args.seed)
    backbone_defaults = backbone_training_defaults(
        accelerator, model_args, seq_args, training_args, len(encoded["train"]), sampler
    )
    run_config = {
        **config.to_dict(model_args, seq_args, data_args, training_args),
        "backbone_defaults": backbone_defaults,
    }

    # --- model ---
    model = build_model(model_args, source_tokenizer, target_tokenizer, accelerator)
    n_params = sum(p.numel() for p in model.parameters())
    model = model.to(accelerator.device)
    if training_args.torch_compile:
        model.compile()  # in place: same module class and state_dict keys

    # --- batches: by sentence count, or by token count (--max_tokens) ---
    train_loader, eval_loader = build_loaders(encoded, source_tokenizer, sampler, training_args)

    # --- optimizer and schedule ---
    optimizer = create_optimizer(model, training_args)
    total_steps, num_epochs = total_training_steps(training_args, len(train_loader) // accelerator.num_processes)
    scheduler = create_scheduler(optimizer, training_args, total_steps)

    # --- prepare ---
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)
    register_checkpoint_state(accelerator, scheduler=scheduler)  # JSON, not pickle
    state = load_checkpoint(accelerator, resume) if resume else TrainState()
    if accelerator.is_main_process:
        accelerator.init_trackers("finetune_seq2seq", config=run_config)

    generate = functools.partial(
        generate_and_score, accelerator, model, source_tokenizer, target_tokenizer, pairs, task, seq_args,
        training_args.per_device_eval_batch_size,
    )  # fmt: skip

    # --- training loop ---
    run_header(
        accelerator, f"finetune_seq2seq ({task})", training_args, model=model, total_steps=total_steps,
        num_epochs=num_epochs, data_sizes={s: len(encoded[s]) for s in encoded}, unit="pairs",
        per_device_batch=f"{seq_args.max_tokens} tokens" if seq_args.max_tokens else None,
        start_step=state.global_step,
    )  # fmt: skip
    progress = ProgressLogger(accelerator, total_steps, state, training_args.logging_steps)
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
        progress.update(loss, n_tokens=(batch["labels"] != -100).sum())
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        state.global_step += 1
        progress.step(scheduler.get_last_lr()[0])
        if training_args.eval_steps and state.global_step % training_args.eval_steps == 0:
            eval_loss = round(validation_loss(model, eval_loader, accelerator), 4)
            _, scores = generate("validation", num_beams=seq_args.eval_num_beams)  # greedy by default: fast
            progress.record({"eval_loss": eval_loss, **{f"eval_{k}": round(v, 2) for k, v in scores.items()}})
        if training_args.save_steps and state.global_step % training_args.save_steps == 0:
            save_checkpoint(accelerator, output_dir, state, training_args.save_total_limit)
        exit_if_preempted(accelerator, training_args, progress)  # SIGTERM / SIGINT / SIGUSR1: checkpoint, exit
        if training_finished(state, total_steps, scheduler):
            break
    progress.finish(scheduler.get_last_lr()[0])
    train_seconds = time.perf_counter() - start_time

    # --- the final model (optionally averaged over the last checkpoints), evaluated with beam search ---
    averaged = 0
    if seq_args.average_last_checkpoints > 1:
        averaged = average_last_checkpoints(accelerator, model, state, output_dir, seq_args.average_last_checkpoints)
    results = {
        "task": task, "model_type": model_args.model_type, "train_runtime": round(train_seconds, 1),
        "global_step": state.global_step, "parameters": n_params, "averaged_checkpoints": averaged,
        "train_loss": progress.last_loss, "validation_loss": round(validation_loss(model, eval_loader, accelerator), 4),
    }  # fmt: skip
    predictions = {}
    for split in ("validation", "test"):
        if split in pairs and split in seq_args.final_eval_splits.split(","):
            predictions[split], scores = generate(split, num_beams=seq_args.num_beams)
            results.update({f"{split}_{k}": round(v, 2) for k, v in scores.items()})
            results[f"{split}_samples"] = len(pairs[split])
    model.eval()

    # --- finish: model, tokenizers, predictions, metrics, log history, model card, push ---
    card, card_metrics = model_card(
        task, model_args, seq_args, data_args, output_dir, accelerator.unwrap_model(model), results
    )
    outputs = functools.partial(
        write_outputs, output_dir, seq_args, source_tokenizer, target_tokenizer, pairs, predictions
    )
    return finish_run(
        accelerator, training_args, model, target_tokenizer, results=results, log_history=state.log_history,
        run_config=run_config, card=card, card_metrics=card_metrics, write_outputs=outputs,
    )  # fmt: skip


if __name__ == "__main__":
    main(*parse_args())
