"""Cloze probe: does a pretrained checkpoint's own language-model head know a task's labels, with no training?

Prompt-based fine-tuning (PET, Schick & Schuetze 2021; LM-BFF, Gao et al. 2021) wins in the few-label regime when
the pretrained LM already puts more probability on "great" than on "terrible" after "<sentence> it was [MASK] .".
This script measures whether a toolkit checkpoint does, before anyone builds on it:

- BERT (`toolkit_bert` MLM): the masked position of a template, e.g. `"{text} it 's [MASK] ."`;
- ELMo (`toolkit_elmo` biLM): the forward LM's next word after a template, e.g. `"{text} it 's"`.

Per template it scores `log p(positive words) - log p(negative words)` and prints the validation accuracy with the
threshold at 0 (zero-shot) and at the median score of the first N labelled sentences (calibrated), and with a
verbalizer searched on those N sentences (the 10 words whose log-probability differs most between the classes,
as LM-BFF's automatic label-word search, simplified). The N sentences are the lecture report's subset for `--seed`.
Labels must be 0 (negative) / 1 (positive).

    OMP_NUM_THREADS=1 python benchmarks/probe_cloze.py --model outputs/lecture_report_cpu/runs/pretrain/bert \
        --train_file ../shared/data/sst2/train.tsv --validation_file ../shared/data/sst2/dev.tsv \
        --text_column sentence --label_column label --labels 500
"""

from __future__ import annotations

import argparse
import os
import random
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe_features import read_rows  # noqa: E402

from toolkit.errors import UserError, exit_on_user_error  # noqa: E402

POSITIVE = ["good", "great", "funny", "best", "fun", "beautiful", "wonderful"]
NEGATIVE = ["bad", "dull", "boring", "worst", "awful", "terrible", "stupid"]
BERT_TEMPLATES = ["{text} it 's {mask} .", "{text} it is {mask} .", "{text} a {mask} film .", "{mask} . {text}"]
ELMO_TEMPLATES = ["{text} it 's", "{text} the film is", "{text} it is a"]


@torch.no_grad()
def bert_log_probs(path: str, texts: list[str], template: str, batch_size: int = 128):
    """((N, V) log-probabilities of the MLM head at the template's [MASK], tokenizer)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    rows = []
    for start in range(0, len(texts), batch_size):
        prompts = [
            template.format(text=t.strip(), mask=tokenizer.mask_token) for t in texts[start : start + batch_size]
        ]
        batch = tokenizer(prompts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        batch.pop("token_type_ids", None)
        hidden = model.bert(**batch).last_hidden_state  # (B, T, C)
        is_mask = batch["input_ids"] == tokenizer.mask_token_id
        if not bool(is_mask.any(1).all()):
            raise UserError(f"a prompt longer than 128 tokens lost its [MASK] to truncation: shorten {template!r}")
        position = is_mask.float().argmax(1)  # (B,)
        rows.append(model.cls(hidden[torch.arange(len(prompts)), position]).float().log_softmax(-1))
    return torch.cat(rows), tokenizer


@torch.no_grad()
def elmo_log_probs(path: str, texts: list[str], template: str, batch_size: int = 64):
    """((N, V) log-probabilities of the forward LM's next word after the template, tokenizer)."""
    from transformers import AutoTokenizer

    from toolkit.models.elmo import ElmoForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = ElmoForLanguageModeling.from_pretrained(path).eval()
    rows = []
    for start in range(0, len(texts), batch_size):
        prompts = [template.format(text=t.strip()) for t in texts[start : start + batch_size]]
        batch = tokenizer(prompts, padding=True, return_tensors="pt")
        _, (forward_top, _) = model.elmo.encode(
            batch["input_ids"], batch.get("char_ids"), batch["attention_mask"], build_representations=False
        )
        last = batch["attention_mask"].sum(-1) - 2  # the template's last word, before </s>
        top = forward_top[torch.arange(len(prompts)), last]  # (B, P)
        if model.adaptive_softmax is not None:
            rows.append(model.adaptive_softmax.log_prob(top))
        else:
            rows.append(model.softmax(top).float().log_softmax(-1))
    return torch.cat(rows), tokenizer


def known(tokenizer, words: list[str]) -> list[int]:
    """Ids of the words that are whole tokens of the vocabulary."""
    found = [tokenizer.convert_tokens_to_ids(w) for w in words]
    return [i for i in found if i is not None and i != tokenizer.unk_token_id]


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="toolkit BERT (MLM) or ELMo (biLM) pretraining output")
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--text_column", default="sentence")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--labels", type=int, default=500, help="labelled sentences for calibration and search")
    parser.add_argument("--seed", type=int, default=0, help="the lecture report's subset of that seed")
    args = parser.parse_args()

    import toolkit  # noqa: F401  (registers the toolkit models with the Auto classes)
    from toolkit.training import model_config_dict

    kind = model_config_dict(args.model, key="--model").get("model_type")
    if kind not in ("toolkit_bert", "toolkit_elmo"):
        raise UserError(f"--model {args.model} is a {kind}, not a toolkit BERT or ELMo checkpoint")
    train_texts, train_labels = read_rows(args.train_file, args.text_column, args.label_column)
    texts, labels = read_rows(args.validation_file, args.text_column, args.label_column)
    order = list(range(len(train_texts)))
    random.Random(args.seed).shuffle(order)  # as lecture_report.prepare_classification_data draws it
    subset = sorted(order[: args.labels])
    few_texts, few = [train_texts[i] for i in subset], np.array([train_labels[i] for i in subset])
    gold = np.array(labels)
    if set(labels) | set(few.tolist()) != {0, 1}:
        raise UserError(f"--label_column {args.label_column} must hold 0 (negative) and 1 (positive)")
    score_fn, templates = (
        (bert_log_probs, BERT_TEMPLATES) if kind == "toolkit_bert" else (elmo_log_probs, ELMO_TEMPLATES)
    )
    print(f"{kind} {args.model}: {len(texts)} validation sentences, {len(few)} labelled (seed {args.seed})")
    for template in templates:
        val, tokenizer = score_fn(args.model, texts, template)
        lab, _ = score_fn(args.model, few_texts, template)

        diff = lab[few == 1].mean(0) - lab[few == 0].mean(0)
        searched = diff.topk(10).indices.tolist(), (-diff).topk(10).indices.tolist()
        verbalizers = {
            "good/bad": (known(tokenizer, ["good"]), known(tokenizer, ["bad"])),
            f"{len(POSITIVE)}+{len(NEGATIVE)} words": (known(tokenizer, POSITIVE), known(tokenizer, NEGATIVE)),
            "searched": searched,
        }
        for name, (pos, neg) in verbalizers.items():
            if not pos or not neg:
                print(f"{template!r:28} {name:14} skipped: no word of its list is one token of the vocabulary")
                continue
            s_val = (val[:, pos].logsumexp(-1) - val[:, neg].logsumexp(-1)).numpy()
            s_lab = (lab[:, pos].logsumexp(-1) - lab[:, neg].logsumexp(-1)).numpy()
            zero = 100 * ((s_val > 0) == gold).mean()
            calibrated = 100 * ((s_val > np.median(s_lab)) == gold).mean()
            print(f"{template!r:28} {name:14} zero-shot {zero:5.1f}  calibrated {calibrated:5.1f}")
        words = (
            [tokenizer.convert_ids_to_tokens(i) for i in searched[0][:5]],
            [tokenizer.convert_ids_to_tokens(i) for i in searched[1][:5]],
        )
        print(f"{'':28} searched words: + {' '.join(words[0])} / - {' '.join(words[1])}")


if __name__ == "__main__":
    main()
