"""Pretrain a BERT-style encoder with masked language modelling (optionally + NSP or SOP) or ELECTRA's
replaced-token detection (`--token_objective rtd`).

What it does: loads text (local files/folders, a Hub dataset, or the embedded demo corpus), trains a WordPiece
tokenizer on the training split unless one is given, packs the token stream into blocks of `max_seq_length` (or
keeps one example per line, or builds NSP/SOP sentence pairs per document), masks dynamically (80/10/10, optional
whole-word masking; the masking of an example depends only on (seed, epoch, example id), so resume and multi-process
runs are exact), trains `ToolkitBertForMaskedLM` / `ToolkitBertForPreTraining`, evaluates MLM loss, masked-token
accuracy and perplexity every `--eval_steps`, checkpoints and resumes exactly, and saves an HF-loadable model
(with its code: loads with `trust_remote_code=True` without the toolkit), the tokenizer and a model card.

    # quickstart: embedded demo corpus, CPU, a few minutes
    accelerate launch --cpu --num_processes 1 recipes/pretrain_bert.py --config recipes/configs/bert/quickstart.yaml
    # your own text, several GPUs, bf16
    accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16 recipes/pretrain_bert.py \\
        --config recipes/configs/bert/base.yaml --train_file corpus/ --output_dir outputs/bert-base
    # resume after an interruption
    accelerate launch recipes/pretrain_bert.py --config recipes/configs/bert/mini.yaml --resume_from_checkpoint latest
    # cramming-style run with a wall-clock budget
    accelerate launch --mixed_precision bf16 recipes/pretrain_bert.py --config recipes/configs/bert/budget.yaml
    # ELECTRA: a small generator fills the masks, the encoder learns from every token (the CPU-budget preset)
    accelerate launch --cpu recipes/pretrain_bert.py --config recipes/configs/bert/cpu_budget.yaml --token_objective rtd
"""

import functools
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field

import datasets
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import AutoModelForMaskedLM, AutoModelForPreTraining

from toolkit import config
from toolkit.data import (
    PretrainingDataArguments,
    batch_iterator,
    load_or_train_tokenizer,
    load_pretraining_text,
    pack_into_blocks,
    tokenize_dataset,
    train_wordpiece,
)
from toolkit.data.mlm import DataCollatorForMLM, build_sentence_pairs, pair_to_features
from toolkit.data.streaming import build_streaming_data, check_streaming_args
from toolkit.errors import UserError, exit_on_user_error
from toolkit.hub import CardInfo, CardMetric, hub_datasets, pretraining_data_names
from toolkit.models.bert import (
    ToolkitBertConfig,
    ToolkitBertForMaskedLM,
    ToolkitBertForPreTraining,
    ToolkitBertForReplacedTokenDetection,
)
from toolkit.training import (
    ProgressLogger,
    TrainingArguments,
    TrainState,
    create_optimizer,
    create_scheduler,
    exit_if_preempted,
    final_evaluation,
    finish_run,
    fit_length_to_model,
    load_checkpoint,
    load_saved_model,
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

TOKENIZER_DIR = "tokenizer"  # inside output_dir: the tokenizer of this run, reused on resume


@dataclass
class BertModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue pretraining this checkpoint instead of starting from scratch."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer folder/name; default: train a WordPiece tokenizer on the data."}
    )
    vocab_size: int = field(default=30522, metadata={"help": "Vocabulary size of the trained WordPiece tokenizer."})
    lowercase: bool = field(default=True, metadata={"help": "Lowercase (and strip accents) in the tokenizer."})
    hidden_size: int = field(default=256, metadata={"help": "Model width."})
    num_hidden_layers: int = field(default=4, metadata={"help": "Encoder blocks."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads."})
    intermediate_size: int = field(default=1024, metadata={"help": "Feed-forward width."})
    max_position_embeddings: int = field(default=512, metadata={"help": "Learned positions (>= max_seq_length)."})
    hidden_act: str = field(default="gelu", metadata={"help": "gelu, gelu_new, relu, geglu or swiglu."})
    pre_norm: bool = field(default=False, metadata={"help": "Pre-LN blocks with a final LayerNorm (else post-LN)."})
    use_bias: bool = field(default=True, metadata={"help": "Biases in the encoder's linear layers."})
    hidden_dropout_prob: float = field(default=0.1, metadata={"help": "Dropout on embeddings and residual branches."})
    attention_probs_dropout_prob: float = field(default=0.1, metadata={"help": "Dropout on attention weights."})
    initializer_range: float = field(
        default=0.02,
        metadata={
            "help": "Std of the normal initialisation (BERT: 0.02). Small models escape the early MLM loss plateau "
            "sooner with a larger one (recipes/configs/bert/cpu_budget.yaml uses 0.05)."
        },
    )
    sparse_prediction: bool = field(default=True, metadata={"help": "Run the MLM head on masked positions only."})
    pad_vocab_to_multiple_of: int = field(default=8, metadata={"help": "Pad the embedding rows (GPU efficiency)."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "sdpa or eager."})
    classifier_pooling: str = field(
        default="cls",
        metadata={
            "help": "Written to the config for fine-tuning: cls (tanh pooler on [CLS]) or mean (masked mean of the "
            "last layer; better for briefly MLM-pretrained encoders, see recipes/configs/bert/cpu_budget.yaml)."
        },
    )

    generator_hidden_size: int | None = field(
        default=None, metadata={"help": "--token_objective rtd: generator width (default hidden_size / 4)."}
    )
    generator_num_hidden_layers: int | None = field(
        default=None, metadata={"help": "--token_objective rtd: generator blocks (default num_hidden_layers)."}
    )
    rtd_loss_weight: float = field(
        default=50.0, metadata={"help": "--token_objective rtd: weight of the replaced-token loss (ELECTRA: 50)."}
    )

    def __post_init__(self):
        if self.hidden_act not in ("gelu", "gelu_new", "relu", "geglu", "swiglu"):
            raise ValueError(f"hidden_act '{self.hidden_act}' is not one of gelu, gelu_new, relu, geglu, swiglu")
        if self.classifier_pooling not in ("cls", "mean"):
            raise ValueError(f"classifier_pooling '{self.classifier_pooling}' is not one of cls, mean")
        sizes = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        generator = ("generator_hidden_size", "generator_num_hidden_layers")  # None: the default
        for name in sizes + generator:  # a typo such as -1 layers would otherwise train a model without blocks
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if not self.initializer_range > 0:
            raise ValueError(f"initializer_range must be > 0, got {self.initializer_range}")
        # the generator's heads follow its width: a width they do not divide is found here, not after the data
        ToolkitBertConfig(
            hidden_size=self.hidden_size, num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size, generator_hidden_size=self.generator_hidden_size,
            pretraining_objectives=["rtd"],
        )  # fmt: skip


@dataclass
class MLMArguments:
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per example (block size)."})
    line_by_line: bool = field(
        default=False, metadata={"help": "One example per text row (truncated) instead of packed blocks."}
    )
    token_objective: str = field(
        default="mlm",
        metadata={
            "help": "mlm (BERT: predict the masked tokens) or rtd (ELECTRA: a small MLM generator fills the masks "
            "and the encoder learns from every position whether its token was replaced; saves the encoder).",
            "choices": ["mlm", "rtd"],
        },
    )
    sentence_objective: str = field(
        default="none", metadata={"help": "none, nsp (next sentence prediction) or sop (sentence order prediction)."}
    )
    short_seq_prob: float = field(default=0.1, metadata={"help": "NSP/SOP: probability of a shorter pair."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Fraction of tokens selected for prediction."})
    whole_word_mask: bool = field(default=False, metadata={"help": "Mask whole WordPiece words."})
    fill_mask_text: str = field(
        default="The meaning of life is [MASK].", metadata={"help": "Sentence for the final fill-mask sample."}
    )

    def __post_init__(self):
        if self.sentence_objective not in ("none", "nsp", "sop"):
            raise ValueError(f"sentence_objective '{self.sentence_objective}' is not one of none, nsp, sop")
        if self.token_objective == "rtd" and self.sentence_objective != "none":
            raise ValueError("token_objective rtd and sentence_objective nsp/sop are exclusive")
        if self.sentence_objective != "none" and self.line_by_line:
            raise ValueError("line_by_line and sentence_objective nsp/sop are exclusive")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError("mlm_probability must be in (0, 1)")


def parse_args(argv=None):
    return config.parse_args(
        BertModelArguments, MLMArguments, PretrainingDataArguments, TrainingArguments, args=argv, description=__doc__
    )


def build_examples(split, tokenizer, mlm_args, data_args, seed):
    """Tokenized examples with `input_ids` (+ `token_type_ids`, `next_sentence_label`) and `example_id`."""
    num_proc = data_args.preprocessing_num_workers
    L = mlm_args.max_seq_length
    if mlm_args.line_by_line:
        split = split.filter(lambda row: bool(row[data_args.text_column].strip()), num_proc=num_proc)
        tokens = tokenize_dataset(split, tokenizer, data_args.text_column, num_proc, truncation=True, max_length=L)
        tokens = tokens.remove_columns([c for c in ("doc_id",) if c in tokens.column_names])
        return tokens.map(lambda _, i: {"example_id": i}, with_indices=True)
    tokens = tokenize_dataset(split, tokenizer, data_args.text_column, num_proc, add_special_tokens=False)
    if mlm_args.sentence_objective == "none":
        return pack_into_blocks(
            tokens, L, tokenizer.cls_token_id, tokenizer.sep_token_id, respect_documents=True, num_proc=num_proc
        )
    # NSP / SOP: paragraphs grouped by document are the "sentences" of BERT's pair construction
    documents = defaultdict(list)
    doc_ids = tokens["doc_id"] if "doc_id" in tokens.column_names else [0] * len(tokens)
    for ids, doc in zip(tokens["input_ids"], doc_ids):
        if ids:
            documents[doc].append(ids)
    pairs = build_sentence_pairs(
        [documents[d] for d in sorted(documents)], L - 3, mlm_args.sentence_objective, seed, mlm_args.short_seq_prob
    )
    rows = [
        {**pair_to_features(a, b, label, tokenizer.cls_token_id, tokenizer.sep_token_id), "example_id": i}
        for i, (a, b, label) in enumerate(pairs)
    ]
    if not rows:
        raise UserError("no sentence pairs could be built: NSP/SOP needs documents with at least two paragraphs")
    return datasets.Dataset.from_list(rows)


def flops_per_token(config, seq_len: int) -> float:
    """6 N (matmul parameters, dense MLM head) + attention score/value matmuls, for training; with replaced-token
    detection, the generator's too (its MLM head counted dense) and the encoder's without a vocabulary head."""
    h, L, i = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    ffn_in = 2 * i if config.hidden_act in ("geglu", "swiglu") else i
    n = L * (4 * h * h + h * (ffn_in + i)) + h * h
    if config.pretraining_objectives == ["rtd"]:  # a one-score head instead of the vocabulary
        return 6 * (n + h) + 12 * L * seq_len * h + flops_per_token(config.generator_config(), seq_len)
    return 6 * (n + config.vocab_size * h) + 12 * L * seq_len * h


def evaluate(model, loader, accelerator, sentence_objective: bool) -> dict:
    """MLM loss (mean over masked tokens), masked-token accuracy, perplexity (+ NSP/SOP accuracy). With replaced-token
    detection these are the generator's, plus the discriminator's accuracy over all real positions and its recall
    of the replaced ones (`eval_rtd_accuracy`, `eval_rtd_recall`)."""
    model.eval()
    totals = torch.zeros(5, dtype=torch.float64, device=accelerator.device)
    rtd = torch.zeros(4, dtype=torch.float64, device=accelerator.device)  # correct, positions, caught, replaced
    for batch in loader:
        with torch.no_grad():
            out = model(**batch)
        labels = batch["labels"]
        if getattr(out, "rtd_labels", None) is not None:
            real = torch.ones_like(out.rtd_labels) if batch.get("attention_mask") is None else batch["attention_mask"]
            real = real.to(torch.float)
            guess = (out.logits > 0).to(torch.float)
            rtd += accelerator.gather_for_metrics(torch.stack([
                ((guess == out.rtd_labels) * real).sum(1), real.sum(1),
                (guess * out.rtd_labels * real).sum(1), (out.rtd_labels * real).sum(1),
            ], dim=1)).sum(0).double()  # fmt: skip
            out.logits = out.generator_logits
        logits = out.logits if getattr(out, "prediction_logits", None) is None else out.prediction_logits
        chosen = labels != -100
        if out.prediction_labels is None:  # dense logits (B, T, V)
            logits = logits[chosen]
        targets = labels[chosen]
        rows = chosen.nonzero()[:, 0]
        per_example = torch.zeros(labels.shape[0], 5, device=labels.device)  # loss, tokens, correct, pair ok, pairs
        per_example[:, 0].index_add_(0, rows, F.cross_entropy(logits.float(), targets, reduction="none"))
        per_example[:, 1].index_add_(0, rows, torch.ones_like(targets, dtype=torch.float))
        per_example[:, 2].index_add_(0, rows, (logits.argmax(-1) == targets).float())
        if sentence_objective:
            per_example[:, 3] = (out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).float()
            per_example[:, 4] = 1.0
        totals += accelerator.gather_for_metrics(per_example).sum(0).double()
    model.train()
    loss = (totals[0] / totals[1].clamp(min=1)).item()
    metrics = {
        "eval_loss": round(loss, 4),
        "eval_accuracy": round((totals[2] / totals[1].clamp(min=1)).item(), 4),
        "eval_perplexity": round(math.exp(min(loss, 50.0)), 3),
    }
    if sentence_objective:
        metrics["eval_sentence_accuracy"] = round((totals[3] / totals[4].clamp(min=1)).item(), 4)
    if rtd[1] > 0:
        metrics["eval_rtd_accuracy"] = round((rtd[0] / rtd[1]).item(), 4)
        metrics["eval_rtd_recall"] = round((rtd[2] / rtd[3].clamp(min=1)).item(), 4)
    return metrics


def global_token_mean_loss(outputs, labels, accelerator):
    """The training loss, with the MLM part normalised by the masked-token count of the *global* batch.

    Each process's MLM loss is a mean over its own masked tokens, and DDP averages gradients over processes, which
    would weight tokens unequally when processes hold different numbers of masked tokens. Rescaling by
    `local_count * num_processes / global_count` makes N processes compute the gradient of the mean over all
    masked tokens, as one process with the same global batch does. Logged through `ProgressLogger` (mean over
    processes), it is also the true global-batch loss. Single process: returned unchanged.
    """
    if accelerator.num_processes == 1:
        return outputs.loss
    mlm_loss = outputs.mlm_loss if getattr(outputs, "mlm_loss", None) is not None else outputs.loss
    local = (labels != -100).sum().float()
    total = accelerator.reduce(local.clone(), reduction="sum").clamp(min=1.0)
    # the rest (NSP/SOP, or the weighted replaced-token loss) is a mean over equally sized per-process batches
    return mlm_loss * local * accelerator.num_processes / total + (outputs.loss - mlm_loss)


def fill_mask(model, tokenizer, text: str, k: int = 5) -> list[str]:
    """Top-k tokens for the first [MASK] of `text`."""
    if tokenizer.mask_token not in text:
        return []
    enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=model.config.max_position_embeddings)
    enc = enc.to(next(model.parameters()).device)
    model.eval()
    with torch.no_grad():
        out = model(**enc)
    logits = out.logits if getattr(out, "prediction_logits", None) is None else out.prediction_logits
    position = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0]
    return [tokenizer.decode([int(i)]).strip() for i in logits[0, position].topk(k).indices]


def build_tokenizer(accelerator, model_args, raw, text_column: str, output_dir: str, resume):
    """The given tokenizer, or a WordPiece trained on the training text (kept in output_dir for a resumed run)."""
    return load_or_train_tokenizer(
        accelerator, model_args.tokenizer_name or model_args.model_name_or_path,
        os.path.join(output_dir, TOKENIZER_DIR), reuse=bool(resume),
        train=lambda: train_wordpiece(  # the iterator is read twice
            functools.partial(batch_iterator, raw["train"], text_column),
            vocab_size=model_args.vocab_size, lowercase=model_args.lowercase,
        ),
    )  # fmt: skip


def build_model(model_args: BertModelArguments, mlm_args: MLMArguments, tokenizer):
    """The checkpoint to continue, or a new model sized for `tokenizer`; with the NSP/SOP head or the RTD generator
    when asked."""
    sentence_objective = mlm_args.sentence_objective
    with_pairs = sentence_objective != "none"
    rtd = mlm_args.token_objective == "rtd"
    if model_args.model_name_or_path:
        if rtd:  # a saved RTD run continues with its generator; from an MLM checkpoint the generator starts new
            return ToolkitBertForReplacedTokenDetection.from_pretrained(model_args.model_name_or_path)
        auto = AutoModelForPreTraining if with_pairs else AutoModelForMaskedLM
        return auto.from_pretrained(model_args.model_name_or_path)
    config = ToolkitBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=model_args.hidden_size,
        num_hidden_layers=model_args.num_hidden_layers,
        num_attention_heads=model_args.num_attention_heads,
        intermediate_size=model_args.intermediate_size,
        max_position_embeddings=model_args.max_position_embeddings,
        hidden_act=model_args.hidden_act,
        pre_norm=model_args.pre_norm,
        use_bias=model_args.use_bias,
        hidden_dropout_prob=model_args.hidden_dropout_prob,
        attention_probs_dropout_prob=model_args.attention_probs_dropout_prob,
        initializer_range=model_args.initializer_range,
        pretraining_objectives=["rtd"] if rtd else ["mlm", sentence_objective] if with_pairs else ["mlm"],
        generator_hidden_size=model_args.generator_hidden_size,
        generator_num_hidden_layers=model_args.generator_num_hidden_layers,
        rtd_loss_weight=model_args.rtd_loss_weight,
        sparse_prediction=model_args.sparse_prediction,
        pad_vocab_to_multiple_of=model_args.pad_vocab_to_multiple_of,
        attn_implementation=model_args.attn_implementation,
        classifier_pooling=model_args.classifier_pooling,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        mask_token_id=tokenizer.mask_token_id,
    )
    if rtd:
        return ToolkitBertForReplacedTokenDetection(config)
    return (ToolkitBertForPreTraining if with_pairs else ToolkitBertForMaskedLM)(config)


def mlm_loaders(accelerator, tokenizer, model, train_set, eval_set, mlm_args, data_args, training_args):
    """(train loader, validation loader, validation examples). With --streaming, `train_set` is the planned streams
    and the validation examples come from them."""
    pad = 8 if accelerator.mixed_precision != "no" else None
    train_collator = DataCollatorForMLM(
        tokenizer, mlm_args.mlm_probability, mlm_args.whole_word_mask, training_args.seed, pad,
        # a sparse MLM head gets the masked positions from the collator instead of counting them on the device
        return_masked_positions=bool(getattr(model.config, "sparse_prediction", False)),
        omit_unpadded_attention_mask=True,  # packed blocks: no step asks the device about an all-ones mask
    )  # fmt: skip
    # validation masking is fixed (its own seed, epoch 0), so successive evaluations are comparable
    eval_collator = DataCollatorForMLM(
        tokenizer, mlm_args.mlm_probability, mlm_args.whole_word_mask, training_args.seed + 1, pad
    )
    if data_args.streaming:
        train_loader, eval_set = build_streaming_data(
            accelerator, train_set, tokenizer, data_args, training_args, mlm_args.max_seq_length,
            mlm_args.line_by_line, train_collator,
            mlm_args.sentence_objective, mlm_args.short_seq_prob,  # nsp / sop: document-aware pairs made on the fly
        )  # fmt: skip
    else:
        train_loader = DataLoader(
            train_set, batch_size=training_args.per_device_train_batch_size, shuffle=True, collate_fn=train_collator,
            num_workers=training_args.dataloader_num_workers, pin_memory=torch.cuda.is_available(),
        )  # fmt: skip
    eval_loader = DataLoader(eval_set, batch_size=training_args.per_device_eval_batch_size, collate_fn=eval_collator)
    return train_loader, eval_loader, eval_set


def model_card(mlm_args, data_args, training_args, n_params: int, steps: int, eval_metrics: dict, eval_size: int):
    """The model card's `CardInfo` and `CardMetric`s."""
    trained_on, evaluated_on = pretraining_data_names(data_args)
    if mlm_args.token_objective == "rtd":
        card = CardInfo(
            title=os.path.basename(os.path.normpath(training_args.output_dir)),
            summary=(
                f"A BERT-style encoder (`toolkit_bert`; {n_params / 1e6:.1f} M parameters with the generator) "
                f"pretrained with ELECTRA's replaced-token detection on `{trained_on}` for {steps} steps. Load "
                "the encoder for fine-tuning with `AutoModelForSequenceClassification` (the generator and the "
                "detection head are not used there). Masked-token accuracy and perplexity are the generator's."
            ),
            datasets=hub_datasets(data_args),
            tags=["bert", "electra", "replaced-token-detection"],
            pipeline_tag="feature-extraction",
        )
        names = ("rtd_accuracy", "accuracy", "perplexity")
        return card, [
            CardMetric("token-classification" if name.startswith("rtd") else "fill-mask", name,
                       eval_metrics[f"eval_{name}"], evaluated_on, num_samples=eval_size)
            for name in names if f"eval_{name}" in eval_metrics
        ]  # fmt: skip
    objective = f" + {mlm_args.sentence_objective.upper()}" if mlm_args.sentence_objective != "none" else ""
    card = CardInfo(
        title=os.path.basename(os.path.normpath(training_args.output_dir)),
        summary=(
            f"A BERT-style encoder (`toolkit_bert`, {n_params / 1e6:.1f} M parameters) pretrained with masked "
            f"language modelling{objective} on `{trained_on}` for {steps} steps."
        ),
        datasets=hub_datasets(data_args),
        tags=["bert", "fill-mask", "masked-lm"],
        pipeline_tag="fill-mask",
    )
    metrics = [
        CardMetric("fill-mask", name, eval_metrics[f"eval_{name}"], evaluated_on, num_samples=eval_size)
        for name in ("accuracy", "perplexity")
    ]
    return card, metrics


def print_fill_mask(accelerator, tokenizer, text: str, output_dir: str, saved_model) -> None:
    """Print the tokens the saved model fills the first [MASK] of `text` with (main process)."""
    if sharded_checkpoints(accelerator):  # FSDP / DeepSpeed: use the weights just saved, not the sharded model
        saved_model = load_saved_model(AutoModelForMaskedLM, output_dir).to(accelerator.device)
    sample = fill_mask(saved_model, tokenizer, text)
    if sample:
        accelerator.print(f"fill-mask: {text!r} -> {sample}")


@exit_on_user_error
def main(
    model_args: BertModelArguments,
    mlm_args: MLMArguments,
    data_args: PretrainingDataArguments,
    training_args: TrainingArguments,
):
    # --- accelerator, seed, resume ---
    accelerator = make_accelerator(training_args)  # also seeds every RNG with training_args.seed
    # output_dir checks (overwrite, leftovers), options compared with the checkpoint's
    resume = prepare_run(accelerator, training_args, model_args, mlm_args, data_args, training_args)
    start_time = time.perf_counter()
    mlm_args.max_seq_length = fit_length_to_model(
        mlm_args, model_args.model_name_or_path, scratch_positions=model_args.max_position_embeddings
    )
    if data_args.streaming:
        check_streaming_args(data_args, training_args)

    # --- data and tokenizer ---
    raw = load_pretraining_text(accelerator, data_args, training_args.seed)
    tokenizer = build_tokenizer(accelerator, model_args, raw, data_args.text_column, training_args.output_dir, resume)
    if not data_args.streaming:  # else tokenized, packed and masked in the DataLoader workers
        with accelerator.main_process_first():
            train_set = build_examples(raw["train"], tokenizer, mlm_args, data_args, training_args.seed)
            eval_set = build_examples(raw["validation"], tokenizer, mlm_args, data_args, training_args.seed + 1)

    # --- model ---
    model = build_model(model_args, mlm_args, tokenizer)
    with_pairs = mlm_args.sentence_objective != "none"
    n_params = sum(p.numel() for p in model.parameters())
    model.to(accelerator.device)
    if training_args.torch_compile:
        model.compile()  # in place: same module class and state_dict keys

    # --- batches: masked dynamically; the masking depends only on (seed, epoch, example id) ---
    if data_args.streaming:  # tokenized, packed and masked in the DataLoader workers; each rank reads its own part
        train_set, eval_set = raw, None
    train_loader, eval_loader, eval_set = mlm_loaders(
        accelerator, tokenizer, model, train_set, eval_set, mlm_args, data_args, training_args
    )

    # --- optimizer and schedule ---
    optimizer = create_optimizer(model, training_args)
    if data_args.streaming:
        total_steps, num_epochs = training_args.max_steps, 1
    else:
        total_steps, num_epochs = total_training_steps(training_args, len(train_loader) // accelerator.num_processes)
    scheduler = create_scheduler(optimizer, training_args, total_steps)

    # --- prepare ---
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)
    # the scheduler and, when streaming, every rank's stream position: JSON, not pickle
    register_checkpoint_state(
        accelerator, scheduler=scheduler, **({"train_stream": train_loader} if data_args.streaming else {})
    )
    state = load_checkpoint(accelerator, resume) if resume else TrainState()
    run_config = config.to_dict(model_args, mlm_args, data_args, training_args)
    if accelerator.is_main_process:
        accelerator.init_trackers("pretrain_bert", config=run_config)

    # --- training loop ---
    run_header(
        accelerator, "pretrain_bert", training_args, model=model, total_steps=total_steps, num_epochs=num_epochs,
        data_sizes={"train": "streamed" if data_args.streaming else len(train_set), "validation": len(eval_set)},
        start_step=state.global_step, unit=f"examples of <= {mlm_args.max_seq_length} tokens",
    )  # fmt: skip
    progress = ProgressLogger(accelerator, total_steps, state, training_args.logging_steps)
    if state.global_step == 0 and training_args.eval_steps:
        progress.record(evaluate(model, eval_loader, accelerator, with_pairs))
    start_training_clock(scheduler)  # --max_time_minutes budgets the training loop only
    if data_args.streaming:
        batches = train_loader.batches(accelerator, state)
    else:
        batches = training_batches(accelerator, train_loader, state, num_epochs)
    for batch in batches:
        with accelerator.accumulate(model):
            loss = global_token_mean_loss(model(**batch), batch["labels"], accelerator)
            accelerator.backward(loss)
            if accelerator.sync_gradients and training_args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), training_args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        mask = batch.get("attention_mask")  # left out when nothing is padded
        progress.update(loss, n_tokens=batch["input_ids"].numel() if mask is None else mask.sum())
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        state.global_step += 1
        progress.step(
            scheduler.get_last_lr()[0], {"data_wait": train_loader.wait_fraction()} if data_args.streaming else None
        )
        if training_args.eval_steps and state.global_step % training_args.eval_steps == 0:
            progress.record(evaluate(model, eval_loader, accelerator, with_pairs))
        if training_args.save_steps and state.global_step % training_args.save_steps == 0:
            save_checkpoint(accelerator, training_args.output_dir, state, training_args.save_total_limit)
        exit_if_preempted(accelerator, training_args, progress)  # SIGTERM / SIGINT / SIGUSR1: checkpoint, exit
        if training_finished(state, total_steps, scheduler):
            break
    progress.finish(
        scheduler.get_last_lr()[0], flops_per_token(accelerator.unwrap_model(model).config, mlm_args.max_seq_length)
    )
    eval_metrics = final_evaluation(state, progress, lambda: evaluate(model, eval_loader, accelerator, with_pairs))

    # --- finish: model, tokenizer, metrics, log history, model card, push ---
    results = {
        **eval_metrics,
        "train_loss": progress.last_loss,
        "global_step": state.global_step,
        "train_runtime": round(time.perf_counter() - start_time, 1),
        "tokens_seen": state.tokens_seen,
        **({"data_wait_fraction": train_loader.wait_fraction()} if data_args.streaming else {}),
    }
    card, card_metrics = model_card(
        mlm_args, data_args, training_args, n_params, state.global_step, eval_metrics, len(eval_set)
    )
    return finish_run(
        accelerator, training_args, model, tokenizer, results=results, log_history=state.log_history,
        run_config=run_config, card=card, card_metrics=card_metrics,
        write_outputs=None if mlm_args.token_objective == "rtd" else functools.partial(
            print_fill_mask, accelerator, tokenizer, mlm_args.fill_mask_text, training_args.output_dir
        ),
    )  # fmt: skip


if __name__ == "__main__":
    main(*parse_args())
