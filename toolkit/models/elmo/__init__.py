"""ELMo family (`model_type="toolkit_elmo"`): config, biLM / feature / classifier models, word+character tokenizer.

`register()` is idempotent; after it the Auto classes know the family (`AutoModel`, `AutoModelForPreTraining` for
the biLM with its softmax, `AutoModelForSequenceClassification`, `AutoTokenizer`) and `save_pretrained` writes an
`auto_map` and copies the code files, so checkpoints load with `trust_remote_code=True` without the toolkit.
"""

from .configuration_elmo import ELMO_PRESETS, ElmoConfig
from .modeling_elmo import (
    ElmoForLanguageModeling,
    ElmoForSequenceClassification,
    ElmoLanguageModelingOutput,
    ElmoModel,
    ElmoModelOutput,
    ElmoPreTrainedModel,
    ElmoScalarMix,
    adaptive_softmax_plan,
    character_cnn_plan,
)
from .tokenization_elmo import ElmoTokenizerFast, word_to_char_ids

_registered = False


def register() -> None:
    """Register config, models and tokenizer with the transformers Auto classes (safe to call more than once)."""
    global _registered
    if _registered:
        return
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForPreTraining,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    AutoConfig.register(ElmoConfig.model_type, ElmoConfig, exist_ok=True)
    ElmoConfig.register_for_auto_class("AutoConfig")
    # The biLM has no causal/masked-LM Auto class that fits (it predicts in both directions); AutoModelForPreTraining
    # is the Auto class of "the model with its pretraining heads".
    for auto_cls, model_cls in [
        (AutoModel, ElmoModel),
        (AutoModelForPreTraining, ElmoForLanguageModeling),
        (AutoModelForSequenceClassification, ElmoForSequenceClassification),
    ]:
        auto_cls.register(ElmoConfig, model_cls, exist_ok=True)
        model_cls.register_for_auto_class(auto_cls.__name__)
    AutoTokenizer.register(ElmoConfig, fast_tokenizer_class=ElmoTokenizerFast, exist_ok=True)
    ElmoTokenizerFast.register_for_auto_class("AutoTokenizer")
    _registered = True


__all__ = [
    "ELMO_PRESETS",
    "ElmoConfig",
    "ElmoPreTrainedModel",
    "ElmoModel",
    "ElmoForLanguageModeling",
    "ElmoForSequenceClassification",
    "ElmoScalarMix",
    "ElmoModelOutput",
    "ElmoLanguageModelingOutput",
    "adaptive_softmax_plan",
    "character_cnn_plan",
    "ElmoTokenizerFast",
    "word_to_char_ids",
    "register",
]
