"""RNN encoder-decoder with attention (`model_type="toolkit_rnn_seq2seq"`; Bahdanau et al. 2015, Luong et al. 2015).

`register()` is idempotent; after it, `AutoModelForSeq2SeqLM.from_config(RNNSeq2SeqConfig(...))` works and
`save_pretrained` writes an `auto_map` plus the two code files, so checkpoints load with `trust_remote_code=True`
where the toolkit is not installed.
"""

from .configuration_rnn_seq2seq import RNNSeq2SeqConfig
from .modeling_rnn_seq2seq import (
    AdditiveAttention,
    BilinearAttention,
    DotAttention,
    RNNSeq2SeqCache,
    RNNSeq2SeqForConditionalGeneration,
    RNNSeq2SeqPreTrainedModel,
)

_registered = False


def register() -> None:
    """Register the config and model with the transformers Auto classes (safe to call more than once)."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    AutoConfig.register(RNNSeq2SeqConfig.model_type, RNNSeq2SeqConfig, exist_ok=True)
    RNNSeq2SeqConfig.register_for_auto_class("AutoConfig")
    AutoModelForSeq2SeqLM.register(RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration, exist_ok=True)
    RNNSeq2SeqForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")
    _registered = True


__all__ = [
    "RNNSeq2SeqConfig",
    "RNNSeq2SeqPreTrainedModel",
    "RNNSeq2SeqForConditionalGeneration",
    "RNNSeq2SeqCache",
    "DotAttention",
    "BilinearAttention",
    "AdditiveAttention",
    "register",
]
