"""Pretrain an ELMo biLM (Peters et al., 2018): forward and backward LSTM language models sharing a token embedder
(character CNN or word embeddings) and a softmax over a word vocabulary.

What it does: loads text (local files/folders, a Hub dataset, or the embedded demo corpus; Gutenberg headers and
licences stripped), builds the word vocabulary of the softmax on the training split (most frequent words, with a
frequency cut-off and a size limit), turns each split into one stream of words (`<s> paragraph </s>` after
paragraph), cuts the stream into fixed-length windows and trains `ElmoForLanguageModeling` on them. With
`--carry_state` (as bilm-tf) the stream is split into one row per batch element and consecutive windows of a row
come in consecutive batches, so LSTM states are carried across windows: left to right for the forward LM and right to
left (the backward LM reads its own windows from the end of the row) for the backward LM; carried states are part of
the checkpoint, so resuming is exact. Evaluation always reads the validation stream with carried states and reports
forward, backward and mean perplexity and the OOV rate of the validation words. Saves model + code (loads with
`trust_remote_code=True` without the toolkit), tokenizer and a model card; `--push_to_hub` uploads them.
`--streaming` reads a corpus of any size instead, each batch row its own shards, and resumes exactly mid-stream
(`toolkit/data/elmo_streaming.py`).

    # quickstart: embedded demo corpus, CPU, a few minutes
    accelerate launch --cpu --num_processes 1 recipes/pretrain_elmo.py --config recipes/configs/elmo/quickstart.yaml
    # Project Gutenberg books, validated on WikiText-2 test (about 20 minutes on 2 CPU cores)
    accelerate launch --cpu --num_processes 1 recipes/pretrain_elmo.py --config recipes/configs/elmo/gutenberg_tiny.yaml
    # published sizes on your corpus, several GPUs, bf16
    accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16 recipes/pretrain_elmo.py \\
        --config recipes/configs/elmo/original.yaml --train_file corpus/ --output_dir outputs/elmo-original
    # a corpus of any size, streamed (needs --max_steps)
    accelerate launch recipes/pretrain_elmo.py --config recipes/configs/elmo/streaming.yaml --train_file corpus/
    # resume after an interruption
    accelerate launch recipes/pretrain_elmo.py --config recipes/configs/elmo/small.yaml --resume_from_checkpoint latest
"""

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader, Dataset, default_collate
from transformers import AutoModelForPreTraining

from toolkit import config
from toolkit.data import PretrainingDataArguments, batch_iterator, load_or_train_tokenizer, load_pretraining_text
from toolkit.data.elmo_streaming import build_elmo_stream_loader, open_elmo_streams
from toolkit.data.streaming import check_streaming_args
from toolkit.errors import UserError, exit_on_user_error
from toolkit.hub import CardInfo, CardMetric, hub_datasets, pretraining_data_names
from toolkit.models.elmo import (
    ElmoConfig,
    ElmoForLanguageModeling,
    ElmoTokenizerFast,
    adaptive_softmax_plan,
    character_cnn_plan,
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
    load_checkpoint,
    make_accelerator,
    prepare_run,
    register_checkpoint_state,
    run_header,
    save_checkpoint,
    start_training_clock,
    total_training_steps,
    training_batches,
    training_finished,
)

TOKENIZER_DIR = "tokenizer"  # inside output_dir: the vocabulary of this run, reused on resume


@dataclass
class ElmoModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue pretraining this checkpoint instead of starting from scratch."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "ElmoTokenizerFast folder; default: build the vocabulary from the data."}
    )
    vocab_size: int = field(default=50000, metadata={"help": "Softmax vocabulary size (words + 4 special tokens)."})
    min_frequency: int = field(default=3, metadata={"help": "Words seen fewer times become <unk> for the softmax."})
    token_embedder: str = field(default="char_cnn", metadata={"help": "char_cnn or word."})
    char_embedding_dim: int = field(default=16, metadata={"help": "Character embedding size."})
    char_cnn_widths: list[int] = field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6, 7], metadata={"help": "Widths of the character convolutions."}
    )
    char_cnn_num_filters: list[int] = field(
        default_factory=lambda: [32, 32, 64, 128, 256, 512, 1024], metadata={"help": "Filters per width."}
    )
    num_highway_layers: int = field(default=2, metadata={"help": "Highway layers after the character CNN."})
    num_layers: int = field(default=2, metadata={"help": "LSTM layers per direction."})
    cell_size: int = field(default=4096, metadata={"help": "LSTM cell size."})
    projection_dim: int = field(default=512, metadata={"help": "LSTM projection = representation size."})
    cell_clip: float | None = field(default=3.0, metadata={"help": "Cell clipping (null: off, fused LSTM)."})
    proj_clip: float | None = field(default=3.0, metadata={"help": "Projection clipping (null: off)."})
    use_residual: bool = field(default=True, metadata={"help": "Residual connections between LSTM layers."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on LSTM inputs and before the softmax."})
    softmax_type: str = field(default="full", metadata={"help": "full or adaptive (large vocabularies)."})
    adaptive_cutoffs: list[int] | None = field(default=None, metadata={"help": "Adaptive softmax cluster bounds."})

    def __post_init__(self):
        for name in ("vocab_size", "num_layers", "cell_size", "projection_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.token_embedder not in ("char_cnn", "word"):
            raise ValueError(f"token_embedder '{self.token_embedder}' is not one of char_cnn, word")
        if self.softmax_type not in ("full", "adaptive"):
            raise ValueError(f"softmax_type '{self.softmax_type}' is not one of full, adaptive")
        if len(self.char_cnn_widths) != len(self.char_cnn_num_filters):
            raise ValueError("char_cnn_widths and char_cnn_num_filters must have the same length")

    def elmo_config(self, tokenizer) -> ElmoConfig:
        cutoffs = self.adaptive_cutoffs
        if (
            self.softmax_type == "adaptive"
            and cutoffs
            and not (list(cutoffs) == sorted(set(cutoffs)) and 0 < cutoffs[0] and cutoffs[-1] < len(tokenizer))
        ):
            raise UserError(
                f"adaptive_cutoffs {list(cutoffs)} must increase and stay below the vocabulary size ({len(tokenizer)} "
                "words, after min_frequency): lower them or raise vocab_size"
            )
        return ElmoConfig(
            vocab_size=len(tokenizer),
            token_embedder=self.token_embedder,
            char_embedding_dim=self.char_embedding_dim,
            char_cnn_filters=[[w, n] for w, n in zip(self.char_cnn_widths, self.char_cnn_num_filters)],
            num_highway_layers=self.num_highway_layers,
            max_characters_per_token=tokenizer.max_characters_per_token,
            num_layers=self.num_layers,
            cell_size=self.cell_size,
            projection_dim=self.projection_dim,
            cell_clip=self.cell_clip,
            proj_clip=self.proj_clip,
            use_residual=self.use_residual,
            dropout=self.dropout,
            softmax_type=self.softmax_type,
            adaptive_cutoffs=self.adaptive_cutoffs,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )


@dataclass
class ElmoDataArguments:
    window_length: int = field(default=20, metadata={"help": "Words per training window (bilm-tf unroll steps)."})
    carry_state: bool = field(
        default=True, metadata={"help": "Carry LSTM states across consecutive windows of a row (bilm-tf)."}
    )
    eval_window_length: int = field(default=50, metadata={"help": "Words per evaluation window (states carried)."})
    stream_segment_windows: int = field(
        default=8, metadata={"help": "--streaming --carry_state: windows per backward-LM segment (states carried)."}
    )

    def __post_init__(self):
        if self.window_length < 2 or self.eval_window_length < 2:
            raise ValueError("window_length and eval_window_length must be >= 2")


def parse_args(argv=None):
    return config.parse_args(
        ElmoModelArguments,
        ElmoDataArguments,
        PretrainingDataArguments,
        TrainingArguments,
        args=argv,
        description=__doc__,
    )


# --- data ---------------------------------------------------------------------------------------------------------


@dataclass
class WordStream:
    """A split as one stream of words: `types` (N,) indexes distinct spellings; each spelling has a vocabulary id
    (`<unk>` when out of vocabulary) and its character ids."""

    types: np.ndarray  # (N,) int64
    vocab_of_type: np.ndarray  # (num_types,) int64
    chars_of_type: np.ndarray  # (num_types, C) int16
    num_words: int  # words in the text (without <s> </s>)
    num_oov: int  # of which out of the vocabulary

    @property
    def oov_rate(self) -> float:
        return self.num_oov / max(1, self.num_words)


def training_steps(accelerator, train_loader, elmo_args, data_args, training_args) -> tuple[int, int]:
    """Optimizer steps and epochs of the run: --max_steps of a stream; else from the windows each process reads
    (with --carry_state the loader is already the process's own rows in order, so it is not split again)."""
    if data_args.streaming:
        return training_args.max_steps, 1
    per_process = len(train_loader) if elmo_args.carry_state else len(train_loader) // accelerator.num_processes
    return total_training_steps(training_args, per_process)


def build_streams(accelerator, raw, tokenizer: ElmoTokenizerFast, data_args) -> tuple[WordStream | None, WordStream]:
    """The training stream (None with --streaming: the DataLoader workers make it) and the validation stream,
    with their sizes and out-of-vocabulary rates printed."""
    train = None if data_args.streaming else build_stream(raw["train"], tokenizer, data_args.text_column)
    validation = build_stream(raw["validation"], tokenizer, data_args.text_column)
    train_size = f"{len(train.types)} tokens (OOV {train.oov_rate:.2%})" if train else "streamed"
    accelerator.print(
        f"vocabulary {len(tokenizer)} words; train stream {train_size}, "
        f"validation {len(validation.types)} tokens (OOV {validation.oov_rate:.2%})"
    )
    return train, validation


def build_stream(split, tokenizer: ElmoTokenizerFast, text_column: str) -> WordStream:
    """`<s> words </s>` for every paragraph, concatenated in order."""
    backend = tokenizer.backend_tokenizer
    vocab = tokenizer.get_vocab()
    unk, bos, eos = tokenizer.unk_token_id, tokenizer.bos_token, tokenizer.eos_token
    type_of_word = {bos: 0, eos: 1}
    stream = []
    for texts in batch_iterator(split, text_column):
        for text, encoding in zip(texts, backend.encode_batch(texts, add_special_tokens=False)):
            words = [text[start:end] for start, end in encoding.offsets]
            stream.append(0)
            stream.extend(type_of_word.setdefault(w, len(type_of_word)) for w in words)
            stream.append(1)
    words = list(type_of_word)
    vocab_of_type = np.array([vocab.get(w, unk) for w in words], dtype=np.int64)
    chars_of_type = np.array(tokenizer.words_to_char_ids(words), dtype=np.int16)
    types = np.array(stream, dtype=np.int64)
    is_word = types > 1
    num_oov = int((vocab_of_type[types[is_word]] == unk).sum())
    return WordStream(types, vocab_of_type, chars_of_type, int(is_word.sum()), num_oov)


class StreamWindows(Dataset):
    """Fixed-length windows of a `WordStream` with their next-word (forward) and previous-word (backward) targets.

    `rows=None`: the windows tile the stream and are independent (shuffle them). `rows=R`: the stream is cut into R
    equal rows; item `k * len(row_ids) + i` is window k of row `row_ids[i]` for the forward LM and window `n - 1 - k`
    for the backward LM, so batches of `len(row_ids)` consecutive items let both LMs carry their states.
    The forward LM never predicts `<s>` and the backward LM never predicts `</s>` (as in bilm-tf)."""

    def __init__(self, stream: WordStream, length: int, tokenizer, with_chars: bool, rows=None, row_ids=None):
        self.stream, self.length, self.with_chars = stream, length, with_chars
        self.bos, self.eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        n = len(stream.types)
        if rows is None:
            self.row_ids, self.row_len, self.windows_per_row = [0], n, n // length
        else:
            self.row_ids = list(range(rows)) if row_ids is None else list(row_ids)
            self.row_len = n // rows
            self.windows_per_row = self.row_len // length
        self.carry = rows is not None
        if self.windows_per_row == 0:
            raise UserError(f"the text is too short for windows of {length} words x {rows or 1} rows ({n} words)")

    def __len__(self):
        return self.windows_per_row * len(self.row_ids)

    def _window(self, row: int, k: int, prefix: str) -> dict:
        start = row * self.row_len + k * self.length
        types = self.stream.types
        positions = np.arange(start, start + self.length)
        vocab = self.stream.vocab_of_type
        window_types = types[positions]
        item = {f"{prefix}input_ids": torch.from_numpy(vocab[window_types])}
        if self.with_chars:
            item[f"{prefix}char_ids"] = torch.from_numpy(self.stream.chars_of_type[window_types].astype(np.int64))
        return item, positions

    def _targets(self, positions: np.ndarray, offset: int, never: int) -> torch.Tensor:
        neighbours = positions + offset
        inside = (neighbours >= 0) & (neighbours < len(self.stream.types))
        targets = np.full(len(positions), -100, dtype=np.int64)
        targets[inside] = self.stream.vocab_of_type[self.stream.types[neighbours[inside]]]
        targets[targets == never] = -100
        return torch.from_numpy(targets)

    def __getitem__(self, index: int) -> dict:
        k, i = divmod(index, len(self.row_ids))
        row = self.row_ids[i]
        item, positions = self._window(row, k, "")
        item["forward_labels"] = self._targets(positions, +1, self.bos)
        if not self.carry:
            item["backward_labels"] = self._targets(positions, -1, self.eos)
            return item
        backward, back_positions = self._window(row, self.windows_per_row - 1 - k, "backward_")
        item.update(backward)
        item["backward_labels"] = self._targets(back_positions, -1, self.eos)
        return item


class CarriedStates:
    """LSTM states carried from one training batch to the next; saved in checkpoints so resume is exact. With several
    processes each reads its own rows in order and so carries its own states: `sync` (collective, called by
    `save_checkpoint` on every process) gathers them, and each process reloads its own."""

    def __init__(self, rank: int = 0, processes: int = 1):
        self.states, self.rank, self.processes, self._gathered = None, rank, processes, None

    def sync(self, accelerator) -> None:
        self._gathered = None
        if accelerator.num_processes > 1 and self.states is not None:  # None on every rank alike (same schedule)
            self._gathered = [accelerator.gather(s.detach().contiguous()[None]).cpu() for s in self.states]

    def state_dict(self):
        if self._gathered is not None:  # (ranks, layers, directions, batch, size): one entry per rank
            h, c = self._gathered
            per_rank = {f"{k}.{r}": t[r] for k, t in (("h", h), ("c", c)) for r in range(len(t))}
            return {"processes": self.processes, **per_rank}
        return {
            "h": None if self.states is None else self.states[0].cpu(),
            "c": None if self.states is None else self.states[1].cpu(),
        }

    def load_state_dict(self, sd):
        saved = sd.get("processes") or 1
        if saved != self.processes and any(key.startswith("h.") for key in sd):
            raise UserError(
                f"the checkpoint carries the LSTM states of {saved} processes; resume it with {saved} processes"
            )
        if f"h.{self.rank}" in sd:
            self.states = (sd[f"h.{self.rank}"], sd[f"c.{self.rank}"])
        else:
            self.states = None if sd.get("h") is None else (sd["h"], sd["c"])


class PlanCollator:
    """Stacks windows and adds what the model would otherwise have to ask the device for (the adaptive softmax's rows
    per cluster, the character CNN's distinct words), computed here on the CPU: no training step then waits for the
    device (`ElmoForLanguageModeling.forward`)."""

    def __init__(self, model: ElmoForLanguageModeling):
        self.config = model.config
        asm = model.adaptive_softmax
        self.cutoffs = None if asm is None else list(asm.cutoffs[:-1])

    def __call__(self, items):
        batch = default_collate(items)
        if self.cutoffs is not None:
            for direction in ("forward", "backward"):
                batch[f"{direction}_softmax_plan"] = adaptive_softmax_plan(batch[f"{direction}_labels"], self.cutoffs)
        if "char_ids" in batch:
            batch["char_plan"] = character_cnn_plan(batch["char_ids"], self.config)
        if "backward_char_ids" in batch:
            batch["backward_char_plan"] = character_cnn_plan(batch["backward_char_ids"], self.config)
        return batch


def stream_loader(
    stream, length, tokenizer, with_chars, batch_size, accelerator, carry: bool, shuffle: bool, collate_fn=None
):
    """DataLoader of windows. Carried states: this process reads its own rows in order (not `prepare`d); its own
    generator keeps the DataLoader's seed draw out of the global RNG stream that dropout uses (exact resume)."""
    if carry:
        rows = batch_size * accelerator.num_processes
        mine = range(accelerator.process_index * batch_size, (accelerator.process_index + 1) * batch_size)
        dataset = StreamWindows(stream, length, tokenizer, with_chars, rows=rows, row_ids=mine)
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=False, generator=torch.Generator().manual_seed(0),
            pin_memory=torch.cuda.is_available(), collate_fn=collate_fn,
        )  # fmt: skip
    dataset = StreamWindows(stream, length, tokenizer, with_chars)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, pin_memory=torch.cuda.is_available(), collate_fn=collate_fn
    )


def build_tokenizer(accelerator, model_args, raw, text_column: str, output_dir: str, resume):
    """The given `ElmoTokenizerFast`, or one with the word vocabulary of the training text (kept in output_dir for a
    resumed run)."""
    source = model_args.tokenizer_name or model_args.model_name_or_path
    tokenizer = load_or_train_tokenizer(
        accelerator, source, os.path.join(output_dir, TOKENIZER_DIR), reuse=bool(resume),
        train=lambda: ElmoTokenizerFast.train_from_iterator(
            batch_iterator(raw["train"], text_column), vocab_size=model_args.vocab_size,
            min_frequency=model_args.min_frequency,
        ),
    )  # fmt: skip
    if not hasattr(tokenizer, "words_to_char_ids"):
        raise UserError(f"tokenizer {source} is not an ElmoTokenizerFast (it must return char_ids)")
    return tokenizer


def build_model(model_args: ElmoModelArguments, tokenizer) -> ElmoForLanguageModeling:
    """The checkpoint to continue, or a new biLM sized for `tokenizer`."""
    if model_args.model_name_or_path:
        return AutoModelForPreTraining.from_pretrained(model_args.model_name_or_path)
    return ElmoForLanguageModeling(model_args.elmo_config(tokenizer))


def stream_loaders(accelerator, raw, train_stream, eval_stream, tokenizer, model, elmo_args, data_args, training_args):
    """(train loader, validation loader) of windows; validation always carries states across windows. With
    --streaming each rank reads its own part of `raw["train"]`; with carry_state each batch row its own text."""
    with_chars = model.config.token_embedder == "char_cnn"
    if data_args.streaming:
        train_loader = build_elmo_stream_loader(
            accelerator, raw["train"], tokenizer, data_args, training_args, elmo_args.window_length,
            elmo_args.carry_state, elmo_args.stream_segment_windows, with_chars, PlanCollator(model),
        )  # fmt: skip
    else:
        train_loader = stream_loader(
            train_stream, elmo_args.window_length, tokenizer, with_chars, training_args.per_device_train_batch_size,
            accelerator, carry=elmo_args.carry_state, shuffle=True, collate_fn=PlanCollator(model),
        )  # fmt: skip
    eval_loader = stream_loader(
        eval_stream, elmo_args.eval_window_length, tokenizer, with_chars, training_args.per_device_eval_batch_size,
        accelerator, carry=True, shuffle=False, collate_fn=PlanCollator(model),
    )  # fmt: skip
    return train_loader, eval_loader


# --- evaluation ---------------------------------------------------------------------------------------------------


def evaluate(model, loader, accelerator) -> dict:
    """Forward, backward and mean perplexity over the stream (states carried across windows)."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=accelerator.device)  # nll fwd, count fwd, nll bwd, count bwd
    states = None
    for batch in loader:
        batch = send_to_device(batch, accelerator.device, non_blocking=True)
        with torch.no_grad():
            out = model(**batch, initial_states=states, return_final_states=True, return_logits=False)
        states = out.final_states
        totals += torch.stack(
            [
                out.forward_loss.double() * out.num_forward_targets,
                out.num_forward_targets.double(),
                out.backward_loss.double() * out.num_backward_targets,
                out.num_backward_targets.double(),
            ]
        )
    model.train()
    totals = accelerator.reduce(totals, reduction="sum")
    fwd = (totals[0] / totals[1].clamp(min=1)).item()
    bwd = (totals[2] / totals[3].clamp(min=1)).item()
    return {
        "eval_loss": round(0.5 * (fwd + bwd), 4),
        "eval_forward_perplexity": round(math.exp(min(fwd, 50.0)), 3),
        "eval_backward_perplexity": round(math.exp(min(bwd, 50.0)), 3),
        "eval_perplexity": round(math.exp(min(0.5 * (fwd + bwd), 50.0)), 3),
        "eval_words": int(totals[1].item()),
    }


def model_card(
    token_embedder: str, data_args, training_args, n_params: int, steps: int, eval_metrics: dict, eval_words: int
):
    """The model card's `CardInfo` and `CardMetric`s."""
    trained_on, evaluated_on = pretraining_data_names(data_args)
    card = CardInfo(
        title=os.path.basename(os.path.normpath(training_args.output_dir)),
        summary=(
            f"An ELMo biLM (`toolkit_elmo`, {n_params / 1e6:.1f} M parameters without the softmax, "
            f"{token_embedder} input) pretrained on `{trained_on}` for {steps} steps. Load the layer "
            "representations with `AutoModel.from_pretrained(..., trust_remote_code=True)`; the tokenizer returns "
            "`input_ids` and `char_ids`."
        ),
        datasets=hub_datasets(data_args),
        tags=["elmo", "bilm", "language-modeling"],
        pipeline_tag="feature-extraction",
    )
    metrics = [
        CardMetric(
            "language-modeling",
            "perplexity",
            eval_metrics[f"eval_{direction}_perplexity"],
            evaluated_on,
            "validation",
            metric_name=f"{direction} perplexity",
            num_samples=eval_words,
        )  # fmt: skip
        for direction in ("forward", "backward")
    ]
    return card, metrics


# --- main -----------------------------------------------------------------------------------------------------------


@exit_on_user_error
def main(
    model_args: ElmoModelArguments,
    elmo_args: ElmoDataArguments,
    data_args: PretrainingDataArguments,
    training_args: TrainingArguments,
):
    # --- accelerator, seed, resume ---
    accelerator = make_accelerator(training_args)  # also seeds every RNG with training_args.seed
    # output_dir checks (overwrite, leftovers), options compared with the checkpoint's
    resume = prepare_run(accelerator, training_args, model_args, elmo_args, data_args, training_args)
    start_time = time.perf_counter()
    if data_args.streaming:
        check_streaming_args(data_args, training_args)

    # --- data and vocabulary (streaming: windows made by the DataLoader workers, toolkit/data/elmo_streaming.py) ---
    raw = load_pretraining_text(accelerator, data_args, training_args.seed, open_streams=open_elmo_streams)
    tokenizer = build_tokenizer(accelerator, model_args, raw, data_args.text_column, training_args.output_dir, resume)
    train_stream, eval_stream = build_streams(accelerator, raw, tokenizer, data_args)

    # --- model ---
    model = build_model(model_args, tokenizer)
    n_params = sum(p.numel() for p in model.elmo.parameters())  # without the softmax
    model.to(accelerator.device)
    if training_args.torch_compile:
        model.compile()  # in place: same module class and state_dict keys
    train_loader, eval_loader = stream_loaders(
        accelerator, raw, train_stream, eval_stream, tokenizer, model, elmo_args, data_args, training_args
    )

    # --- optimizer and schedule ---
    optimizer = create_optimizer(model, training_args)
    total_steps, num_epochs = training_steps(accelerator, train_loader, elmo_args, data_args, training_args)
    scheduler = create_scheduler(optimizer, training_args, total_steps)

    # --- prepare ---
    if elmo_args.carry_state or data_args.streaming:  # each process reads its own rows in order
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    # streaming: every rank's stream positions and carried states (per worker stream) are the loader's
    carried = getattr(train_loader, "carried", None) or CarriedStates(
        accelerator.process_index, accelerator.num_processes
    )
    extra = {"train_stream": train_loader} if data_args.streaming else {"carried": carried}
    register_checkpoint_state(accelerator, scheduler=scheduler, **extra)  # JSON + safetensors
    state = load_checkpoint(accelerator, resume) if resume else TrainState()
    run_config = config.to_dict(model_args, elmo_args, data_args, training_args)
    if accelerator.is_main_process:
        accelerator.init_trackers("pretrain_elmo", config=run_config)

    # --- training loop ---
    run_header(
        accelerator, "pretrain_elmo", training_args, model=model, total_steps=total_steps, num_epochs=num_epochs,
        data_sizes={"train": len(train_stream.types) if train_stream else "streamed",
                    "validation": len(eval_stream.types)}, unit="tokens",
        per_device_batch=f"{training_args.per_device_train_batch_size} windows of {elmo_args.window_length} words",
        start_step=state.global_step,
    )  # fmt: skip
    progress = ProgressLogger(accelerator, total_steps, state, training_args.logging_steps)
    if state.global_step == 0 and training_args.eval_steps:
        progress.record(evaluate(model, eval_loader, accelerator))
    start_training_clock(scheduler)  # --max_time_minutes budgets the training loop only
    if data_args.streaming:
        batches = train_loader.batches(accelerator, state)
    else:
        batches = training_batches(accelerator, train_loader, state, num_epochs)
    for batch in batches:
        batch = send_to_device(batch, accelerator.device, non_blocking=True)
        if state.batch_in_epoch == 1:  # a new pass over the stream starts without context
            carried.states = None
        with accelerator.accumulate(model):
            out = model(
                **batch,
                initial_states=carried.states if elmo_args.carry_state else None,
                return_final_states=elmo_args.carry_state,
                return_logits=False,
            )
            loss = out.loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and training_args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), training_args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        if elmo_args.carry_state:
            carried.states = tuple(s.detach() for s in out.final_states)
        progress.update(loss, n_tokens=out.num_forward_targets)
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        state.global_step += 1
        progress.step(
            scheduler.get_last_lr()[0], {"data_wait": train_loader.wait_fraction()} if data_args.streaming else None
        )
        if training_args.eval_steps and state.global_step % training_args.eval_steps == 0:
            progress.record(evaluate(model, eval_loader, accelerator))
        if training_args.save_steps and state.global_step % training_args.save_steps == 0:
            save_checkpoint(accelerator, training_args.output_dir, state, training_args.save_total_limit)
        exit_if_preempted(accelerator, training_args, progress)  # SIGTERM / SIGINT / SIGUSR1: checkpoint, exit
        if training_finished(state, total_steps, scheduler):
            break
    progress.finish(scheduler.get_last_lr()[0])
    eval_metrics = final_evaluation(state, progress, lambda: evaluate(model, eval_loader, accelerator))

    # --- finish: model, tokenizer, metrics, log history, model card, push ---
    results = {
        **eval_metrics,
        "eval_oov_rate": round(eval_stream.oov_rate, 4),
        "train_loss": progress.last_loss,
        "global_step": state.global_step,
        "train_runtime": round(time.perf_counter() - start_time, 1),
        "tokens_seen": state.tokens_seen,
        "params_without_softmax": n_params,
        **({"data_wait_fraction": train_loader.wait_fraction()} if data_args.streaming else {}),
    }
    card, card_metrics = model_card(
        accelerator.unwrap_model(model).config.token_embedder, data_args, training_args, n_params,
        state.global_step, eval_metrics, len(eval_stream.types),
    )  # fmt: skip
    return finish_run(
        accelerator, training_args, model, tokenizer, results=results, log_history=state.log_history,
        run_config=run_config, card=card, card_metrics=card_metrics,
    )  # fmt: skip


if __name__ == "__main__":
    main(*parse_args())
