"""BiLSTM-attention sentence classifier trained from scratch (the toolkit's no-pretraining baseline)."""

from .configuration_bilstm import BiLSTMConfig
from .modeling_bilstm import (
    BiLSTMForSequenceClassification,
    BiLSTMModel,
    BiLSTMModelOutput,
    BiLSTMPreTrainedModel,
)
from .tokenization_bilstm import train_word_tokenizer


def register() -> None:
    """Register the BiLSTM classes with the transformers Auto classes (safe to call more than once)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    AutoConfig.register(BiLSTMConfig.model_type, BiLSTMConfig, exist_ok=True)
    AutoModel.register(BiLSTMConfig, BiLSTMModel, exist_ok=True)
    AutoModelForSequenceClassification.register(BiLSTMConfig, BiLSTMForSequenceClassification, exist_ok=True)
    # `save_pretrained` then writes an `auto_map` into config.json and copies the two code files next to the weights.
    BiLSTMConfig.register_for_auto_class()
    BiLSTMModel.register_for_auto_class("AutoModel")
    BiLSTMForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")


__all__ = [
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "BiLSTMModel",
    "BiLSTMModelOutput",
    "BiLSTMPreTrainedModel",
    "register",
    "train_word_tokenizer",
]
