"""Configuration of the RNN encoder-decoder with attention (Bahdanau et al., 2015; Luong et al., 2015) or without
(the fixed-vector bottleneck of Cho et al., 2014 and Sutskever et al., 2014)."""

from transformers import PretrainedConfig

ATTENTION_TYPES = ("none", "dot", "bilinear", "additive")
CELL_TYPES = ("gru", "lstm")


class RNNSeq2SeqConfig(PretrainedConfig):
    r"""
    Configuration of [`RNNSeq2SeqForConditionalGeneration`].

    Args:
        vocab_size (`int`, defaults to 32000):
            Target vocabulary size; also the source vocabulary size when `encoder_vocab_size` is `None`.
        encoder_vocab_size (`int`, *optional*):
            Separate source vocabulary size.
        embedding_size (`int`, defaults to 256):
            Width of the source and target token embeddings.
        encoder_hidden_size (`int`, defaults to 256):
            Hidden size of the encoder RNN per direction (the encoder states are `2 * encoder_hidden_size` wide
            when bidirectional).
        hidden_size (`int`, defaults to 512):
            Hidden size of the decoder RNN and of the attentional vector.
        encoder_layers (`int`, defaults to 1):
            Stacked encoder RNN layers.
        decoder_layers (`int`, defaults to 1):
            Stacked decoder RNN layers.
        cell_type (`str`, defaults to `"gru"`):
            `"gru"` (Cho et al., 2014) or `"lstm"` (Hochreiter & Schmidhuber, 1997), for encoder and decoder.
        bidirectional (`bool`, defaults to `True`):
            Bidirectional encoder (Bahdanau et al., 2015).
        attention_type (`str`, defaults to `"additive"`):
            Score between decoder state s and encoder state h: `"dot"` s^T h, `"bilinear"` s^T W h (Luong et al.,
            2015, "general"), or `"additive"` v^T tanh(W1 s + W2 h) (Bahdanau et al., 2015). `"dot"` needs
            `hidden_size` equal to the encoder state width. `"none"`: no attention, the decoder sees only the
            final encoder state (forward state at the last token ; backward state at the first), as its initial
            state and as the same context vector at every step (Cho et al., 2014) -- the fixed-vector bottleneck
            that attention removes.
        attention_hidden_size (`int`, *optional*):
            Inner size of additive attention; defaults to `hidden_size`.
        input_feeding (`bool`, defaults to `True`):
            Feed the previous attentional vector into the next decoder step (Luong et al., 2015, section 3.3).
        dropout (`float`, defaults to 0.2):
            Dropout on embeddings, between stacked RNN layers and on the attentional vector.
        init_range (`float`, defaults to 0.1):
            Parameters are initialised uniformly in [-init_range, init_range] (Luong et al., 2015).
        tie_word_embeddings (`bool`, defaults to `False`):
            The output projection reuses the target embedding matrix (needs `embedding_size == hidden_size`).
        label_smoothing (`float`, defaults to 0.0):
            Label smoothing of the cross-entropy loss.
        pad_token_id (`int`, defaults to 0), bos_token_id (`int`, defaults to 1), eos_token_id (`int`, defaults to 2):
            Special token ids of the (target) vocabulary.
        decoder_start_token_id (`int`, *optional*):
            First decoder input; defaults to `bos_token_id`.
        encoder_pad_token_id (`int`, *optional*):
            Padding id of a separate source vocabulary; defaults to `pad_token_id`.
        use_cache (`bool`, defaults to `True`):
            Return the recurrent state so that generation advances one token per step.
    """

    model_type = "toolkit_rnn_seq2seq"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def __init__(
        self,
        vocab_size: int = 32000,
        encoder_vocab_size: int | None = None,
        embedding_size: int = 256,
        encoder_hidden_size: int = 256,
        hidden_size: int = 512,
        encoder_layers: int = 1,
        decoder_layers: int = 1,
        cell_type: str = "gru",
        bidirectional: bool = True,
        attention_type: str = "additive",
        attention_hidden_size: int | None = None,
        input_feeding: bool = True,
        dropout: float = 0.2,
        init_range: float = 0.1,
        tie_word_embeddings: bool = False,
        label_smoothing: float = 0.0,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        decoder_start_token_id: int | None = None,
        encoder_pad_token_id: int | None = None,
        use_cache: bool = True,
        **kwargs,
    ):
        if attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type must be one of {ATTENTION_TYPES}, got {attention_type!r}")
        if cell_type not in CELL_TYPES:
            raise ValueError(f"cell_type must be one of {CELL_TYPES}, got {cell_type!r}")
        memory_size = encoder_hidden_size * (2 if bidirectional else 1)
        if attention_type == "dot" and memory_size != hidden_size:
            raise ValueError(
                f"dot attention compares decoder and encoder states directly: hidden_size ({hidden_size}) must "
                f"equal the encoder state width ({memory_size} = encoder_hidden_size x directions)"
            )
        if tie_word_embeddings and embedding_size != hidden_size:
            raise ValueError("tie_word_embeddings=True needs embedding_size == hidden_size")
        self.vocab_size = vocab_size
        self.encoder_vocab_size = encoder_vocab_size
        self.embedding_size = embedding_size
        self.encoder_hidden_size = encoder_hidden_size
        self.hidden_size = hidden_size
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.cell_type = cell_type
        self.bidirectional = bidirectional
        self.attention_type = attention_type
        self.attention_hidden_size = attention_hidden_size
        self.input_feeding = input_feeding
        self.dropout = dropout
        self.init_range = init_range
        self.label_smoothing = label_smoothing
        self.encoder_pad_token_id = encoder_pad_token_id
        self.use_cache = use_cache
        # Copied from toolkit.models.transformer.configuration_transformer.TransformerSeq2SeqConfig.__init__ (its end)
        kwargs.pop("is_encoder_decoder", None)  # always True; present in saved config.json files
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=bos_token_id if decoder_start_token_id is None else decoder_start_token_id,
            is_encoder_decoder=True,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    @property
    def memory_size(self) -> int:
        """Width of the encoder states the decoder attends to."""
        return self.encoder_hidden_size * (2 if self.bidirectional else 1)
