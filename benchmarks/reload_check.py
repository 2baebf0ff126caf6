"""Reload a recipe's output folder with `from_pretrained` (as a user would) and print one line; used by gpu_check.sh.

python benchmarks/reload_check.py OUTPUT_DIR
"""

import sys

import transformers

import toolkit  # noqa: F401  (registers the toolkit model types)

SEQ2SEQ = ("toolkit_transformer", "toolkit_rnn_seq2seq")


def main(path: str) -> None:
    config = transformers.AutoConfig.from_pretrained(path)
    auto = transformers.AutoModelForSeq2SeqLM if config.model_type in SEQ2SEQ else transformers.AutoModel
    model = auto.from_pretrained(path)
    print(f"reload ok: {config.model_type}, {sum(p.numel() for p in model.parameters())} params")


if __name__ == "__main__":
    main(sys.argv[1])
