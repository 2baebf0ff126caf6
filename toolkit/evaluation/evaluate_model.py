"""`toolkit evaluate`: score a saved model on a labelled file, offline, on one or many processes.

    toolkit evaluate --model outputs/sst2_bert --task classification \
        --test_file ../shared/data/sst2/dev.tsv --text_column sentence --label_column label
    toolkit evaluate --model outputs/multi30k_transformer --task translation \
        --test_file test_2016_flickr.en --reference_file test_2016_flickr.de
    toolkit evaluate --model outputs/dialogsum --task summarization \
        --test_file dev.jsonl --source_column dialogue --target_column summary
    accelerate launch --multi_gpu --num_processes 2 -m toolkit.evaluation.evaluate_model ...  # data-parallel

Classification reports accuracy, macro-F1 and Matthews correlation and writes `<prefix>_predictions.tsv` (text,
gold, predicted, probability) and `<prefix>_confusion_matrix.png`; translation reports sacreBLEU and chrF;
summarization ROUGE-1/2/L/Lsum. All go to `<prefix>_results.json` in `--output_dir` (default: the model folder).
Under several processes every example is counted exactly once (`Accelerator.gather_for_metrics` drops the
duplicates that pad the last batch). Metrics come from the toolkit's offline `evaluate` modules.

The inference helpers it runs (`predict_classification`, `generate_texts`, ...) live in `toolkit.evaluation.predict`,
shared with the fine-tuning recipes; this module is the command line.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from toolkit.data.batching import ListDataset
from toolkit.data.parallel import read_lines
from toolkit.errors import UserError, exit_on_user_error
from toolkit.evaluation.predict import (
    classification_collator,
    generate_texts,
    label_ids,
    predict_in_order,
    write_classification_outputs,
)

TASKS = ("classification", "translation", "summarization")

# --- data ------------------------------------------------------------------------------------------------------------


def _open_text(path: str):
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8", newline="")


def read_records(path: str) -> list[dict]:
    """Rows of a local .tsv / .csv / .jsonl / .json file (optionally .gz) as dicts.

    TSV is read without quote processing (sentences may contain `"`), as GLUE files need.
    """
    if not os.path.isfile(path):
        raise UserError(f"file {path} does not exist")
    name = path[:-3] if path.endswith(".gz") else path
    suffix = Path(name).suffix.lower()
    with _open_text(path) as f:
        if suffix == ".tsv":
            return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        if suffix == ".csv":
            return list(csv.DictReader(f))
        if suffix == ".jsonl":
            return [json.loads(line) for line in f if line.strip()]
        if suffix == ".json":
            data = json.load(f)
            if isinstance(data, dict) and "data" in data:
                data = data["data"]
            if not isinstance(data, list):
                raise UserError(f"{path}: expected a JSON list of records (or {{'data': [...]}})")
            return data
    raise UserError(f"{path}: unsupported file type '{suffix}' (use .tsv, .csv, .jsonl or .json)")


def column(records: Sequence[dict], name: str, source: str) -> list:
    """The values of column `name`, or a one-line error naming the columns that do exist."""
    if not records:
        raise UserError(f"{source} has no rows")
    if name not in records[0]:
        raise UserError(f"column '{name}' not found in {source}; columns are: {', '.join(map(str, records[0]))}")
    return [record[name] for record in records]


# --- command line ----------------------------------------------------------------------------------------------------


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="A saved model folder (or Hub id) with its tokenizer.")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--test_file", required=True, help="Labelled .tsv/.csv/.jsonl/.json file (or source text).")
    parser.add_argument("--text_column", default=None, help="Classification text column (default: text/sentence).")
    parser.add_argument("--text_pair_column", default=None, help="Second text of sentence-pair tasks.")
    parser.add_argument("--label_column", default="label", help="Classification label column.")
    parser.add_argument("--source_column", default=None, help="Seq2seq source column (table files).")
    parser.add_argument("--target_column", default=None, help="Seq2seq reference column (table files).")
    parser.add_argument(
        "--reference_file", default=None, help="Seq2seq references, one per line, when --test_file is plain text."
    )
    parser.add_argument("--output_dir", default=None, help="Where results go (default: the model folder).")
    parser.add_argument("--prefix", default="test", help="File-name prefix of the written results.")
    parser.add_argument("--per_device_eval_batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=None, help="Truncate inputs to this many tokens.")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Only the first N examples.")
    parser.add_argument("--num_beams", type=int, default=4, help="Beam size for generation.")
    parser.add_argument("--max_new_tokens", type=int, default=128, help="Generation length limit.")
    parser.add_argument("--trust_remote_code", action="store_true", help="Load model code shipped in the folder.")


def add_cli(subparsers) -> None:
    """Add the `evaluate` subcommand to the `toolkit` command line."""
    parser = subparsers.add_parser(
        "evaluate",
        help="Score a saved model on a labelled file (classification, translation, summarization).",
        description=__doc__.split("\n\n")[0],
    )
    _add_arguments(parser)
    parser.set_defaults(func=run)


def _classification(args, accelerator, records, output_dir) -> dict:
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from .scores import classification_scores

    text_column = args.text_column
    if text_column is None:
        text_column = next((c for c in ("text", "sentence", "sentence1") if c in records[0]), "text")
    texts = column(records, text_column, args.test_file)
    pairs = column(records, args.text_pair_column, args.test_file) if args.text_pair_column else None
    gold_values = column(records, args.label_column, args.test_file)

    config = AutoConfig.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    id2label = {int(k): str(v) for k, v in config.id2label.items()}
    label2id = {str(k): int(v) for k, v in config.label2id.items()}
    gold = label_ids(gold_values, label2id, args.test_file)  # before the (slower) model load: fail fast
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, config=config, trust_remote_code=args.trust_remote_code
    )
    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)

    items = [{"text": t, "label": y, "index": i} for i, (t, y) in enumerate(zip(texts, gold))]
    if pairs is not None:
        for item, pair in zip(items, pairs):
            item["text_pair"] = pair
    dataloader = torch.utils.data.DataLoader(
        ListDataset(items),
        batch_size=args.per_device_eval_batch_size,
        collate_fn=classification_collator(tokenizer, args.max_length),
    )
    model, dataloader = accelerator.prepare(model, dataloader)
    result = predict_in_order(model, dataloader, accelerator, len(items))
    predictions = result["predictions"].tolist()
    metrics = classification_scores(predictions, gold)
    metrics.update(num_examples=len(gold), loss=result.get("loss"), num_processes=accelerator.num_processes)
    if accelerator.is_main_process:
        shown = [t if p is None else f"{t} ||| {p}" for t, p in zip(texts, pairs or [None] * len(texts))]
        write_classification_outputs(
            output_dir, args.prefix, shown, gold, predictions, result["probabilities"], id2label, metrics
        )
    return metrics


def _seq2seq(args, accelerator, output_dir) -> dict:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from .scores import task_scores

    if args.reference_file is not None:
        sources, references = read_lines(args.test_file), read_lines(args.reference_file)
        if len(sources) != len(references):
            raise UserError(
                f"{args.test_file} has {len(sources)} lines but {args.reference_file} has {len(references)}"
            )
    else:
        records = read_records(args.test_file)
        if args.max_eval_samples is not None:
            records = records[: args.max_eval_samples]
        defaults = {"translation": ("source", "target"), "summarization": ("dialogue", "summary")}[args.task]
        sources = column(records, args.source_column or defaults[0], args.test_file)
        references = column(records, args.target_column or defaults[1], args.test_file)
    if args.max_eval_samples is not None:
        sources, references = sources[: args.max_eval_samples], references[: args.max_eval_samples]

    model = AutoModelForSeq2SeqLM.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    model = accelerator.prepare(model)
    hypotheses = generate_texts(
        model,
        tokenizer,
        sources,
        accelerator,
        batch_size=args.per_device_eval_batch_size,
        max_source_length=args.max_length,
        num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens,
    )
    metrics = task_scores(args.task, hypotheses, references)
    metrics.update(num_examples=len(references), num_processes=accelerator.num_processes)
    if accelerator.is_main_process:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, f"{args.prefix}_generations.jsonl"), "w", encoding="utf-8") as f:
            for source, hypothesis, reference in zip(sources, hypotheses, references):
                f.write(json.dumps({"source": source, "prediction": hypothesis, "reference": reference}) + "\n")
        with open(os.path.join(output_dir, f"{args.prefix}_results.json"), "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
            f.write("\n")
    return metrics


@exit_on_user_error
def run(args: argparse.Namespace) -> dict:
    """Evaluate `args.model` on `args.test_file`; print and save the metrics; return them."""
    from accelerate import Accelerator

    multi_process_without_gpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(cpu=multi_process_without_gpu)  # `--multi_gpu` on a CPU machine: gloo processes
    output_dir = args.output_dir or (args.model if os.path.isdir(args.model) else f"eval_{Path(args.model).name}")
    if args.task == "classification":
        records = read_records(args.test_file)
        if args.max_eval_samples is not None:
            records = records[: args.max_eval_samples]
        metrics = _classification(args, accelerator, records, output_dir)
    else:
        metrics = _seq2seq(args, accelerator, output_dir)
    if accelerator.is_main_process:
        print(json.dumps({k: v for k, v in metrics.items() if v is not None}, indent=2))
    accelerator.end_training()
    return metrics


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="toolkit evaluate", description=__doc__.split("\n\n")[0])
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
