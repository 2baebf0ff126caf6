"""Linear probes: what a pretrained checkpoint's frozen features know about a classification task.

Mean-pooled features of every layer of a toolkit BERT or ELMo (ELMo: also the average of its layers), a bag of
words and a bag of the checkpoint's own tokens, each fed to a logistic regression trained on the first N labelled
sentences and scored on the validation set. No fine-tuning, so it takes seconds per checkpoint, and it separates
"the features are weak" from "fine-tuning did not use them" when a pretrained model does not beat scratch.

    OMP_NUM_THREADS=1 python benchmarks/probe_features.py --model outputs/lecture_report_cpu/runs/pretrain/bert \
        --train_file ../shared/data/sst2/train.tsv --validation_file ../shared/data/sst2/dev.tsv \
        --text_column sentence --label_column label --labels 500 2000

Prints one line per (feature, N): validation accuracy in percent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch


def read_rows(path: str, text_column: str, label_column: str) -> tuple[list[str], list[int]]:
    import csv

    if path.endswith((".jsonl", ".json")):
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if path.endswith(".tsv") else ","))
    return [r[text_column] for r in rows], [int(r[label_column]) for r in rows]


@torch.no_grad()
def bert_features(path: str, texts: list[str], batch_size: int = 128) -> dict[str, np.ndarray]:
    from transformers import AutoModel, AutoTokenizer

    import toolkit  # noqa: F401  (registers the toolkit models with the Auto classes)

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=64,
                          return_tensors="pt")  # fmt: skip
        hidden = model(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].unsqueeze(-1).float()
        for i, h in enumerate(hidden):
            out.setdefault(f"layer{i}", []).append(((h * mask).sum(1) / mask.sum(1)).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


@torch.no_grad()
def elmo_features(path: str, texts: list[str], batch_size: int = 64) -> dict[str, np.ndarray]:
    from toolkit.embeddings import ElmoEmbedder

    embedder = ElmoEmbedder.from_pretrained(path)
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(texts), batch_size):
        for emb in embedder(texts[start : start + batch_size]):
            layers = emb.layers.mean(1).numpy()  # (L + 1, D)
            for i, v in enumerate(layers):
                out.setdefault(f"layer{i}", []).append(v)
            out.setdefault("mean_of_layers", []).append(layers.mean(0))
    return {k: np.stack(v) for k, v in out.items()}


def probe(train_x, train_y, dev_x, dev_y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler(with_mean=not hasattr(train_x, "tocsr")).fit(train_x)
    clf = LogisticRegression(max_iter=2000, C=0.1).fit(scaler.transform(train_x), train_y)
    return 100.0 * float((clf.predict(scaler.transform(dev_x)) == np.asarray(dev_y)).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], help="toolkit BERT or ELMo folder (repeatable)")
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--text_column", default="sentence")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--labels", type=int, nargs="+", default=[500, 2000])
    args = parser.parse_args(argv)
    from sklearn.feature_extraction.text import CountVectorizer

    train_texts, train_labels = read_rows(args.train_file, args.text_column, args.label_column)
    dev_texts, dev_labels = read_rows(args.validation_file, args.text_column, args.label_column)
    n_max = max(args.labels)
    for n in args.labels:
        bow = CountVectorizer(binary=True).fit(train_texts[:n])
        acc = probe(bow.transform(train_texts[:n]), train_labels[:n], bow.transform(dev_texts), dev_labels)
        print(f"bag of words (vocabulary of the {n} sentences)  N={n}: {acc:.2f}", flush=True)
    for path in args.model:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            model_type = json.load(f)["model_type"]
        extract = {"toolkit_bert": bert_features, "toolkit_elmo": elmo_features}.get(model_type)
        if extract is None:
            print(f"{path}: model_type {model_type} is not a toolkit BERT or ELMo", file=sys.stderr)
            return 2
        feats_train = extract(path, train_texts[:n_max])
        feats_dev = extract(path, dev_texts)
        for name in feats_train:
            for n in args.labels:
                acc = probe(feats_train[name][:n], train_labels[:n], feats_dev[name], dev_labels)
                print(f"{os.path.basename(os.path.normpath(path))} {name} N={n}: {acc:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
