"""Encoder-decoder Transformer family (`model_type="toolkit_transformer"`, Vaswani et al. 2017).

`register()` is idempotent; after it, `AutoModelForSeq2SeqLM.from_config(TransformerSeq2SeqConfig(...))` works and
`save_pretrained` writes an `auto_map` plus the two code files, so checkpoints load with `trust_remote_code=True`
where the toolkit is not installed. BERT warm start lives in `toolkit.models.transformer.warm_start`.
"""

from .configuration_transformer import TransformerSeq2SeqConfig
from .modeling_transformer import (
    TransformerSeq2SeqForConditionalGeneration,
    TransformerSeq2SeqModel,
    TransformerSeq2SeqPreTrainedModel,
)

_registered = False


def register() -> None:
    """Register the config and models with the transformers Auto classes (safe to call more than once)."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

    AutoConfig.register(TransformerSeq2SeqConfig.model_type, TransformerSeq2SeqConfig, exist_ok=True)
    TransformerSeq2SeqConfig.register_for_auto_class("AutoConfig")
    for auto_cls, model_cls in (
        (AutoModel, TransformerSeq2SeqModel),
        (AutoModelForSeq2SeqLM, TransformerSeq2SeqForConditionalGeneration),
    ):
        auto_cls.register(TransformerSeq2SeqConfig, model_cls, exist_ok=True)
        model_cls.register_for_auto_class(auto_cls.__name__)
    _registered = True


__all__ = [
    "TransformerSeq2SeqConfig",
    "TransformerSeq2SeqPreTrainedModel",
    "TransformerSeq2SeqModel",
    "TransformerSeq2SeqForConditionalGeneration",
    "register",
]
