"""Configuration of the ELMo bidirectional language model (Peters et al., 2018, "Deep contextualized word
representations"), following the option names of the original bilm-tf implementation where they exist."""

from transformers import PretrainedConfig

# Published ELMo sizes (bilm-tf / AllenNLP option files). Parameter counts exclude the softmax.
ELMO_PRESETS = {
    # 13.6M parameters
    "small": {"cell_size": 1024, "projection_dim": 128, "num_highway_layers": 1},
    # 28.0M parameters
    "medium": {"cell_size": 2048, "projection_dim": 256, "num_highway_layers": 1},
    # 93.6M parameters
    "original": {"cell_size": 4096, "projection_dim": 512, "num_highway_layers": 2},
}

DEFAULT_CHAR_FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]


class ElmoConfig(PretrainedConfig):
    r"""
    Configuration of an ELMo biLM: a token embedder (character CNN or word embeddings), forward and backward stacks of
    projected LSTMs, and a softmax over a word vocabulary shared by both directions. Defaults are the "original"
    ELMo (93.6M parameters without the softmax).

    Args:
        vocab_size (`int`, *optional*, defaults to 793471):
            Size of the word vocabulary of the softmax (and of the word-embedding input, if used).
        token_embedder (`str`, *optional*, defaults to `"char_cnn"`):
            `"char_cnn"`: words are embedded from their characters (every word, also unseen ones, gets a
            representation). `"word"`: a lookup table over `vocab_size` words (fast, small models; OOV words map to
            `<unk>`).
        char_vocab_size (`int`, *optional*, defaults to 262):
            Number of character ids: 256 UTF-8 byte values + 5 markers (begin/end of word, begin/end of sentence,
            padding inside a word), shifted by one so that 0 pads whole tokens.
        char_embedding_dim (`int`, *optional*, defaults to 16):
            Size of the character embeddings.
        max_characters_per_token (`int`, *optional*, defaults to 50):
            Characters per word including the begin/end-of-word markers; longer words are truncated.
        char_cnn_filters (`list[list[int]]`, *optional*):
            `[width, num_filters]` pairs of the character convolutions (max-pooled over the word).
        char_cnn_activation (`str`, *optional*, defaults to `"relu"`):
            `"relu"` or `"tanh"`, applied after max-pooling.
        num_highway_layers (`int`, *optional*, defaults to 2):
            Highway layers (Srivastava et al., 2015) on top of the concatenated filter outputs.
        word_embedding_dim (`int`, *optional*):
            Size of the word embeddings when `token_embedder="word"`; defaults to `projection_dim` (a linear
            projection is added if different).
        num_layers (`int`, *optional*, defaults to 2):
            LSTM layers per direction.
        cell_size (`int`, *optional*, defaults to 4096):
            LSTM memory cell size.
        projection_dim (`int`, *optional*, defaults to 512):
            LSTM output (projection) size; also the token representation size.
        cell_clip (`float`, *optional*, defaults to 3.0):
            Clip the memory cell to `[-cell_clip, cell_clip]` at every step; `None` disables.
        proj_clip (`float`, *optional*, defaults to 3.0):
            Clip the projected hidden state to `[-proj_clip, proj_clip]`; `None` disables.
        use_residual (`bool`, *optional*, defaults to `True`):
            Residual connection around every LSTM layer but the first.
        lstm_implementation (`str`, *optional*, defaults to `"auto"`):
            `"fused"` (`nn.LSTM` with `proj_size`, ignores clipping), `"stepwise"` (explicit loop, supports
            clipping) or `"auto"` (fused unless clipping is on).
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout on the input of every LSTM layer and before the softmax.
        softmax_type (`str`, *optional*, defaults to `"full"`):
            `"full"` softmax or `"adaptive"` (Grave et al., 2017, `nn.AdaptiveLogSoftmaxWithLoss`) for large
            vocabularies; the vocabulary must be sorted by decreasing frequency for the latter.
        adaptive_cutoffs (`list[int]`, *optional*):
            Cluster boundaries of the adaptive softmax; default `[vocab_size // 10, vocab_size // 3]`.
        adaptive_div_value (`float`, *optional*, defaults to 4.0):
            Factor by which the projection shrinks in each tail cluster.
        freeze_bilm (`bool`, *optional*, defaults to `True`):
            For [`ElmoForSequenceClassification`]: keep the biLM weights fixed (the ELMo recipe); `False` fine-tunes.
        scalar_mix_layer_norm (`bool`, *optional*, defaults to `False`):
            Layer-normalise every biLM layer before the learned scalar mix.
        task_hidden_size (`int`, *optional*, defaults to 256):
            Hidden size (per direction) of the task BiLSTM of the classifier.
        task_attention_dim (`int`, *optional*, defaults to 256):
            Size of the attention-pooling projection (Yang et al., 2016).
        classifier_dropout (`float`, *optional*, defaults to 0.5):
            Dropout on the ELMo representation and on the pooled vector of the classifier.
        task_word_vocab_size (`int`, *optional*, defaults to 0):
            For [`ElmoForSequenceClassification`]: size of a context-independent, trainable word embedding built
            from the task's training texts (its words live in the tokenizer's `task_words`; the tokenizer returns
            `task_word_ids`), concatenated with the scalar-mixed ELMo vector at the input of the task BiLSTM, as
            Peters et al. (2018) concatenate GloVe vectors with ELMo. 0: no word channel.
        task_word_embedding_dim (`int`, *optional*, defaults to 128):
            Width of that word embedding.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of the classifier layers.
    """

    model_type = "toolkit_elmo"

    def __init__(
        self,
        vocab_size=793471,
        token_embedder="char_cnn",
        char_vocab_size=262,
        char_embedding_dim=16,
        max_characters_per_token=50,
        char_cnn_filters=None,
        char_cnn_activation="relu",
        num_highway_layers=2,
        word_embedding_dim=None,
        num_layers=2,
        cell_size=4096,
        projection_dim=512,
        cell_clip=3.0,
        proj_clip=3.0,
        use_residual=True,
        lstm_implementation="auto",
        dropout=0.1,
        softmax_type="full",
        adaptive_cutoffs=None,
        adaptive_div_value=4.0,
        freeze_bilm=True,
        scalar_mix_layer_norm=False,
        task_hidden_size=256,
        task_attention_dim=256,
        classifier_dropout=0.5,
        task_word_vocab_size=0,
        task_word_embedding_dim=128,
        initializer_range=0.02,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        **kwargs,
    ):
        if token_embedder not in ("char_cnn", "word"):
            raise ValueError(f"token_embedder must be 'char_cnn' or 'word', got {token_embedder!r}")
        if lstm_implementation not in ("auto", "fused", "stepwise"):
            raise ValueError(f"lstm_implementation must be auto/fused/stepwise, got {lstm_implementation!r}")
        if softmax_type not in ("full", "adaptive"):
            raise ValueError(f"softmax_type must be 'full' or 'adaptive', got {softmax_type!r}")
        if char_cnn_activation not in ("relu", "tanh"):
            raise ValueError(f"char_cnn_activation must be 'relu' or 'tanh', got {char_cnn_activation!r}")
        self.vocab_size = vocab_size
        self.token_embedder = token_embedder
        self.char_vocab_size = char_vocab_size
        self.char_embedding_dim = char_embedding_dim
        self.max_characters_per_token = max_characters_per_token
        filters = DEFAULT_CHAR_FILTERS if char_cnn_filters is None else char_cnn_filters
        self.char_cnn_filters = [[int(w), int(n)] for w, n in filters]
        self.char_cnn_activation = char_cnn_activation
        self.num_highway_layers = num_highway_layers
        self.word_embedding_dim = word_embedding_dim
        self.num_layers = num_layers
        self.cell_size = cell_size
        self.projection_dim = projection_dim
        self.cell_clip = cell_clip
        self.proj_clip = proj_clip
        self.use_residual = use_residual
        self.lstm_implementation = lstm_implementation
        self.dropout = dropout
        self.softmax_type = softmax_type
        self.adaptive_cutoffs = adaptive_cutoffs
        self.adaptive_div_value = adaptive_div_value
        self.freeze_bilm = freeze_bilm
        self.scalar_mix_layer_norm = scalar_mix_layer_norm
        self.task_hidden_size = task_hidden_size
        self.task_attention_dim = task_attention_dim
        self.classifier_dropout = classifier_dropout
        self.task_word_vocab_size = task_word_vocab_size
        self.task_word_embedding_dim = task_word_embedding_dim
        self.initializer_range = initializer_range
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)

    @property
    def hidden_size(self):
        """Size of every ELMo layer representation (forward and backward concatenated)."""
        return 2 * self.projection_dim

    @property
    def uses_clipping(self):
        return bool(self.cell_clip) or bool(self.proj_clip)

    @classmethod
    def from_preset(cls, name, **kwargs):
        """`ElmoConfig.from_preset("small" | "medium" | "original", vocab_size=...)`: published ELMo sizes."""
        return cls(**{**ELMO_PRESETS[name], **kwargs})


__all__ = ["ElmoConfig", "ELMO_PRESETS"]
