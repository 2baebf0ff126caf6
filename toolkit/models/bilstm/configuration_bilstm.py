"""Configuration of the BiLSTM-attention sentence classifier (the toolkit's "scratch" baseline)."""

from transformers import PretrainedConfig


class BiLSTMConfig(PretrainedConfig):
    r"""
    Configuration for [`BiLSTMModel`] and [`BiLSTMForSequenceClassification`]: word embeddings over a word vocabulary
    trained on the task's training set, a bidirectional LSTM encoder and attention pooling, trained from scratch.

    Classification settings (`num_labels`, `id2label`, `label2id`, `problem_type`) are the usual
    [`PretrainedConfig`] keyword arguments.

    Args:
        vocab_size (`int`, defaults to 20000): number of words in the vocabulary (including special tokens).
        embedding_size (`int`, defaults to 300): word embedding dimension.
        hidden_size (`int`, defaults to 256): LSTM hidden size per direction; token states have 2 * hidden_size.
        num_layers (`int`, defaults to 1): stacked LSTM layers.
        pooling (`str`, defaults to `"attention"`): how token states become one sentence vector: `"attention"`
            (additive attention, v^T tanh(W h_t), softmax over non-pad positions), `"max"` or `"mean"` (over non-pad
            positions).
        attention_size (`int`, defaults to 128): width of W in the attention pooling.
        embedding_dropout (`float`, defaults to 0.25): dropout on word embeddings.
        lstm_dropout (`float`, defaults to 0.0): dropout between stacked LSTM layers (needs `num_layers > 1`).
        classifier_dropout (`float`, defaults to 0.3): dropout on the pooled vector before the classifier.
        initializer_range (`float`, defaults to 0.1): std of the normal init of embeddings and linear layers.
        pad_token_id (`int`, defaults to 0): id of the padding token; its embedding stays zero.
    """

    model_type = "toolkit_bilstm"

    def __init__(
        self,
        vocab_size: int = 20000,
        embedding_size: int = 300,
        hidden_size: int = 256,
        num_layers: int = 1,
        pooling: str = "attention",
        attention_size: int = 128,
        embedding_dropout: float = 0.25,
        lstm_dropout: float = 0.0,
        classifier_dropout: float = 0.3,
        initializer_range: float = 0.1,
        pad_token_id: int = 0,
        **kwargs,
    ):
        if pooling not in ("attention", "max", "mean"):
            raise ValueError(f"pooling must be 'attention', 'max' or 'mean', got {pooling!r}")
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.pooling = pooling
        self.attention_size = attention_size
        self.embedding_dropout = embedding_dropout
        self.lstm_dropout = lstm_dropout
        self.classifier_dropout = classifier_dropout
        self.initializer_range = initializer_range
        super().__init__(pad_token_id=pad_token_id, **kwargs)


__all__ = ["BiLSTMConfig"]
