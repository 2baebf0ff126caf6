"""Configuration of the toolkit's BERT-style encoder (model_type ``toolkit_bert``).

Self-contained: imports only ``transformers``, so it ships with ``save_pretrained`` checkpoints.
"""

from transformers import PretrainedConfig

_ACTIVATIONS = ("gelu", "gelu_new", "relu", "geglu", "swiglu")
_OBJECTIVES = ("mlm", "nsp", "sop", "rtd")


class ToolkitBertConfig(PretrainedConfig):
    r"""Configuration for [`ToolkitBertModel`] and its heads.

    The defaults describe BERT-base (Devlin et al., 2019). Setting ``pre_norm=True, hidden_act="geglu",
    use_bias=False`` gives the "crammed" variant of Geiping & Goldstein (2022).

    Args:
        vocab_size (`int`, defaults to 30522): number of real tokens in the vocabulary.
        hidden_size (`int`, defaults to 768): width of the residual stream.
        num_hidden_layers (`int`, defaults to 12): number of transformer blocks.
        num_attention_heads (`int`, defaults to 12): attention heads per block; must divide `hidden_size`.
        intermediate_size (`int`, defaults to 3072): hidden width of the feed-forward block (for gated
            activations this is the width after gating, i.e. the input projection is `2 * intermediate_size` wide).
        max_position_embeddings (`int`, defaults to 512): number of learned absolute positions.
        type_vocab_size (`int`, defaults to 2): number of segment (token type) embeddings.
        hidden_dropout_prob (`float`, defaults to 0.1): dropout on embeddings and on each residual branch.
        attention_probs_dropout_prob (`float`, defaults to 0.1): dropout on attention probabilities.
        layer_norm_eps (`float`, defaults to 1e-12): epsilon of every LayerNorm.
        hidden_act (`str`, defaults to `"gelu"`): one of `"gelu"` (exact erf), `"gelu_new"` (tanh approximation),
            `"relu"`, or the gated `"geglu"` / `"swiglu"` (Shazeer, 2020). The MLM head transform uses the
            non-gated base activation (`gelu` for `geglu`, `silu` for `swiglu`).
        pre_norm (`bool`, defaults to `False`): `False` = post-LN blocks as in the original BERT; `True` = pre-LN
            blocks (Xiong et al., 2020) followed by a final LayerNorm.
        use_bias (`bool`, defaults to `True`): whether the linear layers of the encoder blocks have biases.
        pretraining_objectives (`list[str]`, defaults to `["mlm"]`): any of `["mlm"]`, `["mlm", "nsp"]`,
            `["mlm", "sop"]`. With `"nsp"` or `"sop"`, [`ToolkitBertForPreTraining`] has a 2-way sentence-relation
            head on the pooled output (NSP: Devlin et al., 2019; SOP: Lan et al., 2020, ALBERT). `["rtd"]` is
            replaced-token detection (ELECTRA, Clark et al., 2020): [`ToolkitBertForReplacedTokenDetection`] trains
            a small MLM generator beside the encoder, which learns from every position whether its token was
            replaced by the generator's sample.
        generator_hidden_size, generator_num_hidden_layers, generator_num_attention_heads,
            generator_intermediate_size (`int`, *optional*): the RTD generator's shape; default a quarter of the
            encoder's width (ELECTRA found 1/4-1/2 best), heads and feed-forward scaled with it, as many layers.
        rtd_loss_weight (`float`, defaults to 50.0): weight of the discriminator's loss against the generator's
            MLM loss (ELECTRA's lambda).
        attn_implementation (`str`, defaults to `"sdpa"`): `"sdpa"` (torch scaled_dot_product_attention) or
            `"eager"` (the plain reference implementation; also used for calls with `output_attentions=True`).
        sparse_prediction (`bool`, defaults to `False`): when labels are given, run the MLM head only on masked
            positions (Liu et al., 2019-style efficiency trick used by cramming); `logits` then has shape
            `(num_masked, vocab_size)`.
        unpad_inputs (`bool`, defaults to `False`): when a batch has padding, drop it before the embeddings and run
            the encoder on the real tokens only, attending within each sequence (MosaicBERT / ModernBERT unpadding);
            same outputs at real positions, zeros at padded positions of `last_hidden_state`.
        unpadded_attention (`str`, defaults to `"auto"`): how unpadded attention groups the sequences: `"buckets"`
            (length buckets, fastest on CPU), `"nested"` (nested-jagged SDPA, varlen kernels on CUDA) or `"auto"`
            (nested on CUDA, buckets elsewhere).
        tie_word_embeddings (`bool`, defaults to `True`): tie the MLM decoder weight to the input embeddings.
        pad_vocab_to_multiple_of (`int`, defaults to 1): round the embedding matrix up to a multiple of this
            (e.g. 64 for tensor cores). Padded rows are never predicted: their logits are pinned to a large
            negative value and are sliced off the returned logits.
        classifier_dropout (`float`, *optional*): dropout before the sequence-classification layer; falls back to
            `hidden_dropout_prob`.
        classifier_pooling (`str`, defaults to `"cls"`): what sequence classification reads: `"cls"` (the tanh
            pooler on [CLS], as BERT) or `"mean"` (the masked mean of the last layer, which suits encoders
            pretrained with MLM only and briefly, whose [CLS] vector carries little) or `"bilstm"` (a learned scalar
            mix of the embedding output and every layer, then a BiLSTM with attention pooling: how ELMo's layers are
            used (Peters et al., 2018) and BERT's feature-based setup (Devlin et al., 2019, Sec. 5.3)).
        classifier_lstm_size (`int`, defaults to 256): size per direction of that BiLSTM.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation (as BERT).
        pad_token_id, cls_token_id, sep_token_id, mask_token_id (`int`): special token ids (BERT WordPiece
            defaults 0, 101, 102, 103).
    """

    model_type = "toolkit_bert"

    def __init__(
        self,
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        layer_norm_eps=1e-12,
        hidden_act="gelu",
        pre_norm=False,
        use_bias=True,
        pretraining_objectives=("mlm",),
        attn_implementation="sdpa",
        sparse_prediction=False,
        unpad_inputs=False,
        unpadded_attention="auto",
        tie_word_embeddings=True,
        pad_vocab_to_multiple_of=1,
        classifier_dropout=None,
        classifier_pooling="cls",
        classifier_lstm_size=256,
        initializer_range=0.02,
        generator_hidden_size=None,
        generator_num_hidden_layers=None,
        generator_num_attention_heads=None,
        generator_intermediate_size=None,
        rtd_loss_weight=50.0,
        pad_token_id=0,
        cls_token_id=101,
        sep_token_id=102,
        mask_token_id=103,
        **kwargs,
    ):
        if hidden_size % num_attention_heads != 0:
            raise ValueError(
                f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"
            )
        if hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {_ACTIVATIONS}, got {hidden_act!r}")
        pretraining_objectives = list(pretraining_objectives)
        if pretraining_objectives != ["rtd"] and (
            "mlm" not in pretraining_objectives or any(o not in _OBJECTIVES[:3] for o in pretraining_objectives)
        ):
            raise ValueError(f"pretraining_objectives must be ['rtd'] or contain 'mlm' and only {_OBJECTIVES[:3]}")
        if "nsp" in pretraining_objectives and "sop" in pretraining_objectives:
            raise ValueError("choose one of 'nsp' and 'sop'")
        if attn_implementation not in ("sdpa", "eager", None):
            raise ValueError(f"attn_implementation must be 'sdpa' or 'eager', got {attn_implementation!r}")
        if unpadded_attention not in ("auto", "buckets", "nested"):
            raise ValueError(f"unpadded_attention must be 'auto', 'buckets' or 'nested', got {unpadded_attention!r}")
        if pad_vocab_to_multiple_of < 1:
            raise ValueError("pad_vocab_to_multiple_of must be >= 1")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.hidden_act = hidden_act
        self.pre_norm = pre_norm
        self.use_bias = use_bias
        self.pretraining_objectives = pretraining_objectives
        self.sparse_prediction = sparse_prediction
        self.unpad_inputs = unpad_inputs
        self.unpadded_attention = unpadded_attention
        self.pad_vocab_to_multiple_of = pad_vocab_to_multiple_of
        self.classifier_dropout = classifier_dropout
        if classifier_pooling not in ("cls", "mean", "bilstm"):
            raise ValueError(f"classifier_pooling '{classifier_pooling}' is not one of cls, mean, bilstm")
        self.classifier_pooling = classifier_pooling
        if not isinstance(classifier_lstm_size, int) or classifier_lstm_size < 1:
            raise ValueError(f"classifier_lstm_size must be a positive integer, got {classifier_lstm_size!r}")
        self.classifier_lstm_size = classifier_lstm_size
        self.initializer_range = initializer_range
        if pretraining_objectives == ["rtd"]:  # the generator's shape; other configs do not carry these keys
            self.generator_hidden_size = generator_hidden_size or max(hidden_size // 4, num_attention_heads)
            ratio = self.generator_hidden_size / hidden_size
            self.generator_num_hidden_layers = generator_num_hidden_layers or num_hidden_layers
            self.generator_num_attention_heads = generator_num_attention_heads or max(
                1, round(num_attention_heads * ratio)
            )
            self.generator_intermediate_size = generator_intermediate_size or max(1, round(intermediate_size * ratio))
            if self.generator_hidden_size % self.generator_num_attention_heads:
                raise ValueError(
                    f"generator_hidden_size {self.generator_hidden_size} is not a multiple of "
                    f"generator_num_attention_heads {self.generator_num_attention_heads} (by default "
                    "num_attention_heads x generator_hidden_size / hidden_size, rounded): choose a width that count "
                    "divides"
                )
            self.rtd_loss_weight = rtd_loss_weight
        self.cls_token_id = cls_token_id
        self.sep_token_id = sep_token_id
        self.mask_token_id = mask_token_id
        super().__init__(
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            attn_implementation=attn_implementation,
            **kwargs,
        )

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding matrix: `vocab_size` rounded up to `pad_vocab_to_multiple_of`."""
        m = self.pad_vocab_to_multiple_of
        return (self.vocab_size + m - 1) // m * m

    def generator_config(self) -> "ToolkitBertConfig":
        """The config of the RTD generator: this one, with the generator's shape and an MLM objective."""
        if self.pretraining_objectives != ["rtd"]:
            raise ValueError("only a config with pretraining_objectives ['rtd'] has a generator")
        kwargs = self.to_dict()
        for key in ("model_type", "transformers_version", "architectures", "auto_map", "_name_or_path"):
            kwargs.pop(key, None)
        kwargs.update(
            hidden_size=self.generator_hidden_size,
            num_hidden_layers=self.generator_num_hidden_layers,
            num_attention_heads=self.generator_num_attention_heads,
            intermediate_size=self.generator_intermediate_size,
            pretraining_objectives=["mlm"],
            sparse_prediction=True,
        )
        for key in [k for k in kwargs if k.startswith("generator_") or k == "rtd_loss_weight"]:
            kwargs.pop(key)
        return ToolkitBertConfig(**kwargs)

    @property
    def sentence_objective(self):
        """`"nsp"`, `"sop"` or `None`: the sentence-relation objective of the pretraining head."""
        for name in ("nsp", "sop"):
            if name in self.pretraining_objectives:
                return name
        return None


__all__ = ["ToolkitBertConfig"]
