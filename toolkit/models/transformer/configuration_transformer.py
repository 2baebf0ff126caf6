"""Configuration of the encoder-decoder Transformer (Vaswani et al., 2017, "Attention Is All You Need")."""

from transformers import PretrainedConfig


class TransformerSeq2SeqConfig(PretrainedConfig):
    r"""
    Configuration of [`TransformerSeq2SeqForConditionalGeneration`].

    The defaults are the `base` model of Vaswani et al. (2017): 6 + 6 layers, d_model 512, 8 heads, FFN 2048,
    post-LN, sinusoidal positions, one joint vocabulary shared by source, target and output embeddings.

    The `encoder_*` options that default to `None` follow the shared setting; set them to make the encoder
    BERT-compatible so that it can be warm-started from a BERT checkpoint (Liu & Lapata, 2019, "Text Summarization
    with Pretrained Encoders"): `encoder_vocab_size=30522, encoder_position_embedding_type="learned",
    encoder_type_vocab_size=2, encoder_layernorm_embedding=True, encoder_activation_function="gelu",
    encoder_normalize_before=False, encoder_scale_embedding=False, encoder_layer_norm_eps=1e-12,
    share_embeddings=False` (see `warm_start.bert_encoder_config_kwargs`).

    Args:
        vocab_size (`int`, defaults to 32000):
            Target (decoder and output) vocabulary size; also the source vocabulary size when
            `encoder_vocab_size` is `None` (joint vocabulary).
        d_model (`int`, defaults to 512):
            Width of every layer, encoder and decoder.
        encoder_layers (`int`, defaults to 6):
            Number of encoder layers.
        decoder_layers (`int`, defaults to 6):
            Number of decoder layers.
        encoder_attention_heads (`int`, defaults to 8):
            Attention heads per encoder layer.
        decoder_attention_heads (`int`, defaults to 8):
            Attention heads per decoder layer (self- and cross-attention).
        encoder_ffn_dim (`int`, defaults to 2048):
            Inner size of the encoder's position-wise feed-forward network.
        decoder_ffn_dim (`int`, defaults to 2048):
            Inner size of the decoder's position-wise feed-forward network.
        activation_function (`str`, defaults to `"relu"`):
            FFN non-linearity (any key of `transformers.activations.ACT2FN`).
        dropout (`float`, defaults to 0.1):
            Dropout on embeddings and on every sub-layer output before the residual addition.
        attention_dropout (`float`, defaults to 0.0):
            Dropout on attention weights.
        activation_dropout (`float`, defaults to 0.0):
            Dropout after the FFN non-linearity.
        normalize_before (`bool`, defaults to `False`):
            `False`: post-LN as published (`LN(x + sublayer(x))`). `True`: pre-LN (`x + sublayer(LN(x))`, plus a
            final LayerNorm), which trains more stably without warm-up (Xiong et al., 2020).
        position_embedding_type (`str`, defaults to `"sinusoidal"`):
            `"sinusoidal"` (fixed, Vaswani et al.) or `"learned"` (one trained vector per position).
        max_position_embeddings (`int`, defaults to 1024):
            Longest sequence for learned positions.
        scale_embedding (`bool`, defaults to `True`):
            Multiply token embeddings by sqrt(d_model) (Vaswani et al., section 3.4).
        layer_norm_eps (`float`, defaults to 1e-5):
            LayerNorm epsilon.
        init_std (`float`, defaults to 0.02):
            Standard deviation of the normal initialisation of learned position and token-type embeddings.
        share_embeddings (`bool`, defaults to `True`):
            Source and target share one embedding matrix (requires a joint vocabulary, i.e.
            `encoder_vocab_size=None`). Implies `tie_word_embeddings=True`.
        tie_word_embeddings (`bool`, defaults to `True`):
            The output projection reuses the target embedding matrix (Press & Wolf, 2017).
        label_smoothing (`float`, defaults to 0.0):
            Label smoothing of the cross-entropy loss (Szegedy et al., 2016; 0.1 in Vaswani et al.).
        encoder_vocab_size (`int`, *optional*):
            Separate source vocabulary size (e.g. a BERT encoder's WordPiece vocabulary).
        encoder_type_vocab_size (`int`, defaults to 0):
            Number of token-type (segment) embeddings added in the encoder, 0 for none (BERT uses 2).
        encoder_layernorm_embedding (`bool`, defaults to `False`):
            LayerNorm on the encoder embeddings (BERT).
        encoder_activation_function (`str`, *optional*):
            Encoder FFN non-linearity (BERT: `"gelu"`); defaults to `activation_function`.
        encoder_position_embedding_type (`str`, *optional*):
            Encoder positions (BERT: `"learned"`); defaults to `position_embedding_type`.
        encoder_normalize_before (`bool`, *optional*):
            Encoder pre-LN switch (BERT: `False`); defaults to `normalize_before`.
        encoder_scale_embedding (`bool`, *optional*):
            Encoder embedding scaling (BERT: `False`); defaults to `scale_embedding`.
        encoder_layer_norm_eps (`float`, *optional*):
            Encoder LayerNorm epsilon (BERT: 1e-12); defaults to `layer_norm_eps`.
        pad_token_id (`int`, defaults to 0), bos_token_id (`int`, defaults to 1), eos_token_id (`int`, defaults to 2):
            Special token ids of the (target) vocabulary.
        decoder_start_token_id (`int`, *optional*):
            First decoder input; defaults to `bos_token_id`.
        encoder_pad_token_id (`int`, *optional*):
            Padding id of a separate source vocabulary; defaults to `pad_token_id`.
        use_cache (`bool`, defaults to `True`):
            Return the key/value cache for incremental decoding.
    """

    model_type = "toolkit_transformer"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "encoder_attention_heads",
        "num_hidden_layers": "encoder_layers",
    }

    def __init__(
        self,
        vocab_size: int = 32000,
        d_model: int = 512,
        encoder_layers: int = 6,
        decoder_layers: int = 6,
        encoder_attention_heads: int = 8,
        decoder_attention_heads: int = 8,
        encoder_ffn_dim: int = 2048,
        decoder_ffn_dim: int = 2048,
        activation_function: str = "relu",
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        normalize_before: bool = False,
        position_embedding_type: str = "sinusoidal",
        max_position_embeddings: int = 1024,
        scale_embedding: bool = True,
        layer_norm_eps: float = 1e-5,
        init_std: float = 0.02,
        share_embeddings: bool = True,
        tie_word_embeddings: bool = True,
        label_smoothing: float = 0.0,
        encoder_vocab_size: int | None = None,
        encoder_type_vocab_size: int = 0,
        encoder_layernorm_embedding: bool = False,
        encoder_activation_function: str | None = None,
        encoder_position_embedding_type: str | None = None,
        encoder_normalize_before: bool | None = None,
        encoder_scale_embedding: bool | None = None,
        encoder_layer_norm_eps: float | None = None,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        decoder_start_token_id: int | None = None,
        encoder_pad_token_id: int | None = None,
        use_cache: bool = True,
        **kwargs,
    ):
        for name, value in (("position_embedding_type", position_embedding_type),
                            ("encoder_position_embedding_type", encoder_position_embedding_type)):  # fmt: skip
            if value not in (None, "sinusoidal", "learned"):
                raise ValueError(f"{name} must be 'sinusoidal' or 'learned', got {value!r}")
        if d_model % encoder_attention_heads or d_model % decoder_attention_heads:
            raise ValueError(f"d_model={d_model} must be divisible by the number of attention heads")
        if share_embeddings and encoder_vocab_size not in (None, vocab_size):
            raise ValueError("share_embeddings=True needs a joint vocabulary: set encoder_vocab_size=None")
        if share_embeddings and not tie_word_embeddings:
            raise ValueError("share_embeddings=True ties all three embedding matrices: set tie_word_embeddings=True")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.encoder_attention_heads = encoder_attention_heads
        self.decoder_attention_heads = decoder_attention_heads
        self.encoder_ffn_dim = encoder_ffn_dim
        self.decoder_ffn_dim = decoder_ffn_dim
        self.activation_function = activation_function
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.normalize_before = normalize_before
        self.position_embedding_type = position_embedding_type
        self.max_position_embeddings = max_position_embeddings
        self.scale_embedding = scale_embedding
        self.layer_norm_eps = layer_norm_eps
        self.init_std = init_std
        self.share_embeddings = share_embeddings
        self.label_smoothing = label_smoothing
        self.encoder_vocab_size = encoder_vocab_size
        self.encoder_type_vocab_size = encoder_type_vocab_size
        self.encoder_layernorm_embedding = encoder_layernorm_embedding
        self.encoder_activation_function = encoder_activation_function
        self.encoder_position_embedding_type = encoder_position_embedding_type
        self.encoder_normalize_before = encoder_normalize_before
        self.encoder_scale_embedding = encoder_scale_embedding
        self.encoder_layer_norm_eps = encoder_layer_norm_eps
        self.encoder_pad_token_id = encoder_pad_token_id
        self.use_cache = use_cache
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

    # Resolved encoder settings: the `encoder_*` value when set, else the shared one.
    @property
    def resolved_encoder_settings(self) -> dict:
        def pick(own, shared):
            return shared if own is None else own

        return {
            "vocab_size": pick(self.encoder_vocab_size, self.vocab_size),
            "pad_token_id": pick(self.encoder_pad_token_id, self.pad_token_id),
            "activation_function": pick(self.encoder_activation_function, self.activation_function),
            "position_embedding_type": pick(self.encoder_position_embedding_type, self.position_embedding_type),
            "normalize_before": pick(self.encoder_normalize_before, self.normalize_before),
            "scale_embedding": pick(self.encoder_scale_embedding, self.scale_embedding),
            "layer_norm_eps": pick(self.encoder_layer_norm_eps, self.layer_norm_eps),
            "type_vocab_size": self.encoder_type_vocab_size,
            "layernorm_embedding": self.encoder_layernorm_embedding,
        }
