"""Pretrain and fine-tune BERT-style, ELMo-style and seq2seq models the Hugging Face way.

Importing `toolkit` registers every model family with the transformers Auto classes, so
`AutoModel.from_pretrained(dir)` works on checkpoints the recipes write (and, where the toolkit is not installed,
`trust_remote_code=True` loads the code shipped inside the checkpoint).
"""

import importlib

__version__ = "0.1.0"

MODEL_FAMILIES = ("bert", "elmo", "transformer", "rnn_seq2seq", "bilstm")


def _register_model_families() -> None:
    for family in MODEL_FAMILIES:
        try:
            module = importlib.import_module(f"toolkit.models.{family}")
        except ModuleNotFoundError as err:  # a family not present in this checkout
            if err.name and err.name.startswith("toolkit.models"):
                continue
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register()


_register_model_families()
