"""BERT-style encoder family (`model_type="toolkit_bert"`): config, models and Auto-class registration.

`register()` is idempotent; after it, `AutoModelForMaskedLM.from_config(ToolkitBertConfig(...))` works and
`save_pretrained` writes an `auto_map` plus the two code files, so checkpoints load with `trust_remote_code=True`
where the toolkit is not installed.
"""

from .configuration_bert import ToolkitBertConfig
from .modeling_bert import (
    ToolkitBertForMaskedLM,
    ToolkitBertForPreTraining,
    ToolkitBertForReplacedTokenDetection,
    ToolkitBertForSequenceClassification,
    ToolkitBertModel,
    ToolkitBertPreTrainedModel,
)

_registered = False


def register() -> None:
    """Register the config and models with the transformers Auto classes (safe to call more than once)."""
    global _registered
    if _registered:
        return
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForMaskedLM,
        AutoModelForPreTraining,
        AutoModelForSequenceClassification,
    )

    pairs = [
        (AutoModel, ToolkitBertModel),
        (AutoModelForMaskedLM, ToolkitBertForMaskedLM),
        (AutoModelForPreTraining, ToolkitBertForPreTraining),
        (AutoModelForSequenceClassification, ToolkitBertForSequenceClassification),
    ]
    AutoConfig.register(ToolkitBertConfig.model_type, ToolkitBertConfig, exist_ok=True)
    ToolkitBertConfig.register_for_auto_class("AutoConfig")
    for auto_cls, model_cls in pairs:
        auto_cls.register(ToolkitBertConfig, model_cls, exist_ok=True)
        model_cls.register_for_auto_class(auto_cls.__name__)
    # ELECTRA's discriminator checkpoints load with `AutoModelForPreTraining` as HF's ELECTRA does (their saved
    # auto_map says so); in this process that Auto class keeps building the MLM + NSP/SOP model of the config.
    ToolkitBertForReplacedTokenDetection.register_for_auto_class("AutoModelForPreTraining")
    _registered = True


__all__ = [
    "ToolkitBertConfig",
    "ToolkitBertPreTrainedModel",
    "ToolkitBertModel",
    "ToolkitBertForMaskedLM",
    "ToolkitBertForPreTraining",
    "ToolkitBertForSequenceClassification",
    "ToolkitBertForReplacedTokenDetection",
    "register",
]
