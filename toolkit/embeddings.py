"""Contextual word vectors from a pretrained ELMo: every layer, and their scalar mix (Peters et al., 2018, Eq. 1).

ELMo's point is that a word's vector depends on its sentence: "bank" in "the bank of the river" and in "the bank
raised rates" get different vectors, from the biLSTM layers that read the whole sentence in both directions. A
biLM with L LSTM layers gives L + 1 representations per word: layer 0 is the context-independent token layer
(character CNN or word embedding, forward and backward copies concatenated), layers 1..L the biLSTM outputs
(forward and backward states concatenated, 2 x projection size each). A downstream task mixes them:
`gamma * sum_j softmax(s)_j * h_j`. Without a task the natural choices are the average of the layers (equal `s`)
or one layer; an ELMo classifier fine-tuned with the toolkit has learned `s` and `gamma`, and they are used.

    from toolkit.embeddings import ElmoEmbedder
    embedder = ElmoEmbedder.from_pretrained("outputs/elmo-quickstart")
    sentence = embedder(["He sat on the bank of the river .", "She paid money into the bank ."])[0]
    sentence.words, sentence.layers.shape, sentence.mixed.shape   # [...], (L + 1, T, D), (T, D)

    toolkit embed --model outputs/elmo-quickstart --text "He sat on the bank ." [--layer mix|0|1|...] [--out v.json]

(`pipeline("feature-extraction")` returns only the top layer, with the sentence-boundary tokens.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from toolkit.errors import UserError


@dataclass
class ElmoEmbedding:
    """The vectors of one sentence: `layers` (L + 1, T, D) per layer, `mixed` (T, D) their scalar mix; T = words."""

    words: list[str]
    layers: torch.Tensor
    mixed: torch.Tensor


class ElmoEmbedder:
    """Words -> ELMo vectors with a saved toolkit ELMo (biLM or ELMo classifier) and its tokenizer."""

    def __init__(self, model, tokenizer, weights: torch.Tensor | None = None, gamma: float = 1.0):
        self.model = model.eval()
        self.tokenizer = tokenizer
        num_layers = model.config.num_layers + 1
        self.weights = weights if weights is not None else torch.full((num_layers,), 1.0 / num_layers)
        self.gamma = gamma

    @classmethod
    def from_pretrained(cls, path: str, trust_remote_code: bool = False) -> ElmoEmbedder:
        """Load `path` (a toolkit ELMo folder). A fine-tuned ELMo classifier brings its learned scalar mix."""
        import os

        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        if not os.path.isfile(os.path.join(path, "config.json")):
            raise UserError(f"--model {path} is not a saved model folder (no config.json)")
        if not trust_remote_code:
            import toolkit  # noqa: F401  (registers toolkit_elmo with the Auto classes)
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        if config.model_type != "toolkit_elmo":
            raise UserError(
                f"--model {path} is a {config.model_type} model; embed needs a toolkit ELMo (toolkit_elmo)"
            )
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        architecture = (config.architectures or [""])[0]
        if architecture.endswith("ForSequenceClassification"):
            classifier = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=trust_remote_code)
            mix = classifier.scalar_mix
            if mix.layer_norm:  # the classifier normalises layers first; keep to the plain mix here
                return cls(classifier.elmo, tokenizer)
            return cls(classifier.elmo, tokenizer, mix.weights().detach(), float(mix.gamma.detach()))
        return cls(AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code), tokenizer)

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> list[ElmoEmbedding]:
        if isinstance(texts, str):
            texts = [texts]
        batch = self.tokenizer(list(texts), return_tensors="pt", padding=True)
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "char_ids", "attention_mask")}
        stacked = self.model(**inputs).stacked_hidden_states.float().cpu()  # (B, L + 1, T, D)
        results = []
        for i, text in enumerate(texts):
            positions = [p for p, w in enumerate(batch.word_ids(i)) if w is not None]  # drop <s>, </s>, padding
            layers = stacked[i][:, positions]  # (L + 1, T, D)
            mixed = self.gamma * torch.einsum("l,ltd->td", self.weights.float(), layers)
            results.append(ElmoEmbedding(self.tokenizer.split_words(text), layers, mixed))
        return results


def _run(args) -> None:
    embedder = ElmoEmbedder.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    rows = []
    for text in args.text:
        sentence = embedder([text])[0]
        if args.layer == "mix":
            vectors = sentence.mixed
        else:
            if not args.layer.isdigit() or int(args.layer) >= sentence.layers.shape[0]:
                raise UserError(f"--layer {args.layer}: expected 'mix' or 0..{sentence.layers.shape[0] - 1}")
            vectors = sentence.layers[int(args.layer)]
        for word, vector in zip(sentence.words, vectors):
            rows.append({"text": text, "word": word, "vector": [round(x, 6) for x in vector.tolist()]})
            shown = " ".join(f"{x:+.3f}" for x in vector[:4].tolist())
            print(f"{word:>15s}  [{shown} ...]  norm {vector.norm():.3f}  dim {vector.numel()}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(rows, f)
        print(f"{len(rows)} word vectors written to {args.out}")


def add_cli(subparsers) -> None:
    """Add the `embed` subcommand to the `toolkit` command line."""
    parser = subparsers.add_parser(
        "embed",
        help="Print (or save) the contextual ELMo vectors of the words of a sentence.",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--model", required=True, help="A saved toolkit ELMo folder (biLM or ELMo classifier).")
    parser.add_argument("--text", required=True, action="append", help="A sentence; repeat for several.")
    parser.add_argument(
        "--layer", default="mix", help="'mix' (the scalar mix of all layers) or a layer index (0 = token layer)."
    )
    parser.add_argument("--out", default=None, help="Write every word's vector to this JSON file.")
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="Load the model code shipped in the folder (not the toolkit's).",
    )
    parser.set_defaults(func=_run)
