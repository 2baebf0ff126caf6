"""The encoder-decoder Transformer, written to be read next to the paper.

Features and where each comes from:
- Scaled dot-product multi-head attention; encoder self-attention, masked (causal) decoder self-attention and
  decoder cross-attention to the encoder; position-wise FFN; residual + LayerNorm after each sub-layer (post-LN);
  sinusoidal positions; embeddings scaled by sqrt(d_model); source/target/output embeddings shared over a joint
  vocabulary; label smoothing -- Vaswani et al. (2017), "Attention Is All You Need".
- Pre-LN option (`normalize_before`) -- Xiong et al. (2020), "On Layer Normalization in the Transformer
  Architecture"; Wang et al. (2019), "Learning Deep Transformer Models for Machine Translation".
- Tying the output projection to the target embedding -- Press & Wolf (2017), "Using the Output Embedding to Improve
  Language Models".
- Learned positions, token-type embeddings, embedding LayerNorm and GELU in the encoder so that a BERT encoder can be
  copied in (Devlin et al., 2019) -- the warm start of Liu & Lapata (2019), "Text Summarization with Pretrained
  Encoders" (see `warm_start.py`, which this file does not import).
- Label smoothing -- Szegedy et al. (2016), "Rethinking the Inception Architecture".

Attention has a plain eager reference (`eager_attention_forward`) and uses PyTorch SDPA through
`transformers.modeling_utils.ALL_ATTENTION_FUNCTIONS` when `config._attn_implementation == "sdpa"` (the default);
calls that ask for attention weights always run the eager path. Incremental decoding keeps keys/values in an
`EncoderDecoderCache` (self-attention keys grow by one step per token, cross-attention keys are computed once).

This file imports only torch, transformers and its sibling configuration file, so `save_pretrained` can ship it and
`from_pretrained(..., trust_remote_code=True)` works where the toolkit is not installed.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, ModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_transformer import TransformerSeq2SeqConfig

# transformers renamed the cache argument and output field from `past_key_values` to `cache` during v5; `forward`
# accepts both names and outputs use the one the installed version's generation loop reads.
CACHE_NAME = "cache" if "cache" in Seq2SeqLMOutput.__dataclass_fields__ else "past_key_values"


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher forcing: decoder input at step t is the target token of step t-1 (`<start>` at step 0)."""
    shifted = labels.new_zeros(labels.shape)
    shifted[:, 1:] = labels[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def sinusoidal_positions(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)) (Vaswani et al., 3.5)."""
    i = torch.arange(0, d_model, 2, device=positions.device, dtype=torch.float32)  # the even dimensions 2i
    angles = positions.float()[:, None] / torch.pow(10000.0, i / d_model)[None, :]  # (T, ceil(d/2))
    table = torch.zeros(positions.shape[0], d_model, device=positions.device)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return table  # (T, d)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(d_k)) V, the reference the SDPA kernels must match.

    query (B, H, Tq, D); key, value (B, H, Tk, D); attention_mask bool, broadcastable to (B, H, Tq, Tk), True where a
    query may look. Returns the output (B, Tq, H, D) and the weights (B, H, Tq, Tk).
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, H, Tq, Tk)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value)  # (B, H, Tq, D)
    return output.transpose(1, 2).contiguous(), weights


class TransformerSeq2SeqAttention(nn.Module):
    """Multi-head attention (Vaswani et al., 3.2.2): h heads of scaled dot-product attention, concatenated."""

    def __init__(self, config: TransformerSeq2SeqConfig, num_heads: int, is_cross_attention: bool, layer_idx: int):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = config.d_model // num_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_cross_attention = is_cross_attention
        self.is_causal = False  # causality is always part of the explicit mask
        self.layer_idx = layer_idx
        self.q_proj = nn.Linear(config.d_model, config.d_model)
        self.k_proj = nn.Linear(config.d_model, config.d_model)
        self.v_proj = nn.Linear(config.d_model, config.d_model)
        self.out_proj = nn.Linear(config.d_model, config.d_model)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape  # (B, Tq, d)
        query = self._split_heads(self.q_proj(hidden_states))  # (B, H, Tq, D)

        if self.is_cross_attention:
            # Encoder keys/values do not change while decoding: project them once, then read them from the cache.
            if cache is not None and cache.is_updated.get(self.layer_idx, False):
                key = cache.cross_attention_cache.layers[self.layer_idx].keys
                value = cache.cross_attention_cache.layers[self.layer_idx].values
            else:
                key = self._split_heads(self.k_proj(key_value_states))  # (B, H, S, D)
                value = self._split_heads(self.v_proj(key_value_states))
                if cache is not None:
                    key, value = cache.cross_attention_cache.update(key, value, self.layer_idx)
                    cache.is_updated[self.layer_idx] = True
        else:
            key = self._split_heads(self.k_proj(hidden_states))  # (B, H, Tq, D)
            value = self._split_heads(self.v_proj(hidden_states))
            if cache is not None:  # append this step's keys/values to those of earlier steps
                key, value = cache.self_attention_cache.update(key, value, self.layer_idx)  # (B, H, past+Tq, D)

        implementation = self.config._attn_implementation or "eager"
        if output_attentions or implementation == "eager":
            attention_interface = eager_attention_forward
        else:
            attention_interface = ALL_ATTENTION_FUNCTIONS[implementation]
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            scaling=self.scaling,
            dropout=self.attention_dropout if self.training else 0.0,
            is_causal=False,
        )
        output = output.reshape(batch, length, -1)  # (B, Tq, H*D)
        return self.out_proj(output), (weights if output_attentions else None)


class TransformerSeq2SeqEmbeddings(nn.Module):
    """Token embedding (times sqrt(d_model) if scaled) + position encoding [+ token type] [-> LayerNorm] -> dropout."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        pad_token_id: int,
        position_embedding_type: str,
        max_position_embeddings: int,
        scale_embedding: bool,
        dropout: float,
        type_vocab_size: int = 0,
        layernorm_embedding: bool = False,
        layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.d_model = d_model
        self.embed_scale = math.sqrt(d_model) if scale_embedding else 1.0
        self.pad_token_id = pad_token_id
        self.tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_token_id)
        if scale_embedding:
            self.tokens.init_std = d_model**-0.5  # unit-variance inputs once multiplied by sqrt(d_model)
        self.position_embedding_type = position_embedding_type
        self.positions = (
            nn.Embedding(max_position_embeddings, d_model) if position_embedding_type == "learned" else None
        )
        self.token_types = nn.Embedding(type_vocab_size, d_model) if type_vocab_size > 0 else None
        self.layer_norm = nn.LayerNorm(d_model, eps=layer_norm_eps) if layernorm_embedding else None
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, input_ids: torch.Tensor, past_length: int = 0, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        positions = torch.arange(past_length, past_length + input_ids.shape[1], device=input_ids.device)  # (T,)
        x = self.tokens(input_ids) * self.embed_scale  # (B, T, d)
        if self.positions is not None:
            x = x + self.positions(positions)[None]
        else:
            x = x + sinusoidal_positions(positions, self.d_model).to(x.dtype)[None]
        if self.token_types is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_types(token_type_ids)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.dropout(x)


class TransformerSeq2SeqFeedForward(nn.Module):
    """FFN(x) = act(x W1 + b1) W2 + b2 (Vaswani et al., 3.3)."""

    def __init__(self, d_model: int, ffn_dim: int, activation_function: str, activation_dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)
        self.activation = ACT2FN[activation_function]
        self.activation_dropout = nn.Dropout(activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_dropout(self.activation(self.fc1(x))))


class TransformerSeq2SeqEncoderLayer(nn.Module):
    """Self-attention and FFN sub-layers, each wrapped in residual + LayerNorm (post-LN or pre-LN)."""

    def __init__(self, config: TransformerSeq2SeqConfig, layer_idx: int):
        super().__init__()
        settings = config.resolved_encoder_settings
        self.normalize_before = settings["normalize_before"]
        eps = settings["layer_norm_eps"]
        self.self_attn = TransformerSeq2SeqAttention(config, config.encoder_attention_heads, False, layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model, eps=eps)
        self.ffn = TransformerSeq2SeqFeedForward(
            config.d_model, config.encoder_ffn_dim, settings["activation_function"], config.activation_dropout
        )
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None, output_attentions: bool = False):
        residual = x
        if self.normalize_before:
            x = self.self_attn_layer_norm(x)
        x, weights = self.self_attn(x, attention_mask=attention_mask, output_attentions=output_attentions)
        x = residual + self.dropout(x)
        if not self.normalize_before:
            x = self.self_attn_layer_norm(x)

        residual = x
        if self.normalize_before:
            x = self.final_layer_norm(x)
        x = residual + self.dropout(self.ffn(x))
        if not self.normalize_before:
            x = self.final_layer_norm(x)
        return x, weights


class TransformerSeq2SeqDecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder output, FFN; residual + LayerNorm around each."""

    def __init__(self, config: TransformerSeq2SeqConfig, layer_idx: int):
        super().__init__()
        self.normalize_before = config.normalize_before
        eps = config.layer_norm_eps
        heads = config.decoder_attention_heads
        self.self_attn = TransformerSeq2SeqAttention(config, heads, is_cross_attention=False, layer_idx=layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model, eps=eps)
        self.encoder_attn = TransformerSeq2SeqAttention(config, heads, is_cross_attention=True, layer_idx=layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model, eps=eps)
        self.ffn = TransformerSeq2SeqFeedForward(
            config.d_model, config.decoder_ffn_dim, config.activation_function, config.activation_dropout
        )
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=eps)
        self.dropout = nn.Dropout(config.dropout)

    def _sublayer(self, x, layer_norm, function):
        """x + dropout(function(x)) with the LayerNorm before (pre-LN) or after (post-LN)."""
        residual = x
        if self.normalize_before:
            x = layer_norm(x)
        x, weights = function(x)
        x = residual + self.dropout(x)
        if not self.normalize_before:
            x = layer_norm(x)
        return x, weights

    def forward(
        self,
        x: torch.Tensor,
        self_attention_mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None,
        cache: EncoderDecoderCache | None = None,
        output_attentions: bool = False,
    ):
        x, self_weights = self._sublayer(
            x,
            self.self_attn_layer_norm,
            lambda h: self.self_attn(
                h, attention_mask=self_attention_mask, cache=cache, output_attentions=output_attentions
            ),
        )
        x, cross_weights = self._sublayer(
            x,
            self.encoder_attn_layer_norm,
            lambda h: self.encoder_attn(
                h,
                key_value_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
                cache=cache,
                output_attentions=output_attentions,
            ),
        )
        x, _ = self._sublayer(x, self.final_layer_norm, lambda h: (self.ffn(h), None))
        return x, self_weights, cross_weights


@dataclass
class TransformerSeq2SeqDecoderOutput(ModelOutput):
    """Decoder stack output: top hidden states, the (updated) cache, and optional per-layer tensors."""

    last_hidden_state: torch.Tensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) 1 = token, 0 = padding  ->  bool (B, 1, 1, S) for every head and query."""
    if attention_mask is None:
        return None
    return attention_mask[:, None, None, :].bool()


class TransformerSeq2SeqPreTrainedModel(PreTrainedModel):
    config_class = TransformerSeq2SeqConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _no_split_modules = ["TransformerSeq2SeqEncoderLayer", "TransformerSeq2SeqDecoderLayer"]

    def _init_weights(self, module: nn.Module):
        """Xavier-uniform linear layers with zero biases; N(0, d^-1/2) token embeddings (they are scaled by sqrt(d));
        N(0, init_std) learned position / token-type embeddings; LayerNorm = identity."""
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            if getattr(module, "is_output_projection", False):
                init.normal_(module.weight, mean=0.0, std=self.config.d_model**-0.5)
            else:
                init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            # token embeddings carry `init_std` = d^-1/2 when scaled by sqrt(d); positions / token types use init_std
            init.normal_(module.weight, mean=0.0, std=getattr(module, "init_std", std))
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()


class TransformerSeq2SeqEncoder(nn.Module):
    """Embeddings followed by N encoder layers (final LayerNorm in the pre-LN variant)."""

    main_input_name = "input_ids"

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__()
        self.config = config
        settings = config.resolved_encoder_settings
        self.embeddings = TransformerSeq2SeqEmbeddings(
            vocab_size=settings["vocab_size"],
            d_model=config.d_model,
            pad_token_id=settings["pad_token_id"],
            position_embedding_type=settings["position_embedding_type"],
            max_position_embeddings=config.max_position_embeddings,
            scale_embedding=settings["scale_embedding"],
            dropout=config.dropout,
            type_vocab_size=settings["type_vocab_size"],
            layernorm_embedding=settings["layernorm_embedding"],
            layer_norm_eps=settings["layer_norm_eps"],
        )
        self.layers = nn.ModuleList(TransformerSeq2SeqEncoderLayer(config, i) for i in range(config.encoder_layers))
        normalize_before = settings["normalize_before"]
        self.layer_norm = nn.LayerNorm(config.d_model, eps=settings["layer_norm_eps"]) if normalize_before else None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput:
        mask = padding_mask(attention_mask)  # (B, 1, 1, S)
        x = self.embeddings(input_ids, token_type_ids=token_type_ids)  # (B, S, d)
        all_hidden = (x,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            x, weights = layer(x, mask, output_attentions=bool(output_attentions))
            if output_attentions:
                all_attentions += (weights,)
            if output_hidden_states:
                all_hidden += (x,)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
            if output_hidden_states:
                all_hidden = all_hidden[:-1] + (x,)
        output = BaseModelOutput(last_hidden_state=x, hidden_states=all_hidden, attentions=all_attentions)
        return output if return_dict is not False else output.to_tuple()


class TransformerSeq2SeqDecoder(nn.Module):
    """Target embeddings followed by N decoder layers; each position sees only itself and earlier positions."""

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__()
        self.config = config
        self.embeddings = TransformerSeq2SeqEmbeddings(
            vocab_size=config.vocab_size,
            d_model=config.d_model,
            pad_token_id=config.pad_token_id,
            position_embedding_type=config.position_embedding_type,
            max_position_embeddings=config.max_position_embeddings,
            scale_embedding=config.scale_embedding,
            dropout=config.dropout,
        )
        self.layers = nn.ModuleList(TransformerSeq2SeqDecoderLayer(config, i) for i in range(config.decoder_layers))
        self.layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.normalize_before else None

    @staticmethod
    def causal_mask(length: int, past_length: int, device: torch.device) -> torch.Tensor:
        """Query i (absolute position past_length + i) may look at keys 0 .. past_length + i: bool (1, 1, T, past+T)."""
        allowed = torch.ones(length, past_length + length, dtype=torch.bool, device=device).tril(diagonal=past_length)
        return allowed[None, None]

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> TransformerSeq2SeqDecoderOutput:
        past_length = cache.get_seq_length() if cache is not None else 0
        length = input_ids.shape[1]
        self_mask = self.causal_mask(length, past_length, input_ids.device)  # (1, 1, T, past+T)
        if attention_mask is not None:  # optional decoder padding mask over past + current positions
            self_mask = self_mask & padding_mask(attention_mask[:, -(past_length + length) :])
        cross_mask = padding_mask(encoder_attention_mask)  # (B, 1, 1, S)

        x = self.embeddings(input_ids, past_length=past_length)  # (B, T, d)
        all_hidden = (x,) if output_hidden_states else None
        all_self = () if output_attentions else None
        all_cross = () if output_attentions else None
        for layer in self.layers:
            x, self_weights, cross_weights = layer(
                x, self_mask, encoder_hidden_states, cross_mask, cache=cache, output_attentions=output_attentions
            )
            if output_attentions:
                all_self += (self_weights,)
                all_cross += (cross_weights,)
            if output_hidden_states:
                all_hidden += (x,)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
            if output_hidden_states:
                all_hidden = all_hidden[:-1] + (x,)
        return TransformerSeq2SeqDecoderOutput(
            last_hidden_state=x, cache=cache, hidden_states=all_hidden, attentions=all_self, cross_attentions=all_cross
        )


def _as_encoder_output(encoder_outputs) -> BaseModelOutput:
    if isinstance(encoder_outputs, BaseModelOutput):
        return encoder_outputs
    if isinstance(encoder_outputs, dict):
        return BaseModelOutput(**encoder_outputs)
    encoder_outputs = tuple(encoder_outputs)  # return_dict=False tuple: (last_hidden_state, hidden_states, attentions)
    return BaseModelOutput(*(encoder_outputs + (None,) * (3 - len(encoder_outputs))))


class TransformerSeq2SeqModel(TransformerSeq2SeqPreTrainedModel):
    """Encoder + decoder, returning the decoder's top hidden states (no output projection)."""

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__(config)
        self.encoder = TransformerSeq2SeqEncoder(config)
        self.decoder = TransformerSeq2SeqDecoder(config)
        if config.share_embeddings:  # one joint vocabulary: the decoder reads the encoder's embedding matrix
            # The same module, not only the same Parameter: FSDP2 keeps a shared parameter in one group, and it
            # finds the decoder's use of it only when the module itself is shared.
            self.decoder.embeddings.tokens = self.encoder.embeddings.tokens
            self._tied_weights_keys = {"decoder.embeddings.tokens.weight": "encoder.embeddings.tokens.weight"}
        else:
            self._tied_weights_keys = None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embeddings.tokens

    def set_input_embeddings(self, value: nn.Embedding):
        self.encoder.embeddings.tokens = value
        if self.config.share_embeddings:
            self.decoder.embeddings.tokens = value

    def get_encoder(self, modality: str | None = None):
        return self.encoder

    def get_decoder(self):
        return self.decoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput:
        cache = cache if cache is not None else past_key_values
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        output_attentions = bool(output_attentions if output_attentions is not None else self.config.output_attentions)
        output_hidden_states = bool(
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
            )
        encoder_outputs = _as_encoder_output(encoder_outputs)
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        if not use_cache:
            cache = None
        decoder_outputs = self.decoder(
            decoder_input_ids,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            attention_mask=decoder_attention_mask,
            cache=cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        output = Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
            **{CACHE_NAME: cache},
        )
        return output if return_dict is not False else output.to_tuple()


class TransformerSeq2SeqForConditionalGeneration(TransformerSeq2SeqPreTrainedModel, GenerationMixin):
    """Encoder-decoder Transformer with the output projection to the target vocabulary and a label-smoothed loss.

    `labels` (B, T) are the target token ids (-100 = ignored); decoder inputs are the labels shifted right behind
    `config.decoder_start_token_id` unless `decoder_input_ids` are given.
    """

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__(config)
        self.model = TransformerSeq2SeqModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.is_output_projection = True
        if config.share_embeddings:
            source = "model.encoder.embeddings.tokens.weight"
            self._tied_weights_keys = {"lm_head.weight": source, "model.decoder.embeddings.tokens.weight": source}
        elif config.tie_word_embeddings:
            self._tied_weights_keys = {"lm_head.weight": "model.decoder.embeddings.tokens.weight"}
        else:
            self._tied_weights_keys = None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear):
        self.lm_head = value

    def get_encoder(self, modality: str | None = None):
        return self.model.encoder

    def get_decoder(self):
        return self.model.decoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        if labels is not None:
            use_cache = False  # teacher forcing sees the whole target at once
            if decoder_input_ids is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            token_type_ids=token_type_ids,
            encoder_outputs=encoder_outputs,
            cache=cache if cache is not None else past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, V)

        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.float().view(-1, logits.shape[-1]),
                labels.view(-1).to(logits.device),
                ignore_index=-100,
                label_smoothing=self.config.label_smoothing,
            )
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
        )
        return output if return_dict is not False else output.to_tuple()

    def prepare_inputs_for_generation(
        self,
        decoder_input_ids: torch.Tensor,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> dict:
        """Feed the decoder only the tokens the cache has not seen yet (all of them on the first step)."""
        cache = cache if cache is not None else past_key_values
        if cache is not None and cache.get_seq_length() > 0:
            decoder_input_ids = decoder_input_ids[:, cache.get_seq_length() :]
        inputs = {
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_attention_mask,
            "attention_mask": attention_mask,
            "encoder_outputs": encoder_outputs,
            "use_cache": use_cache,
            CACHE_NAME: cache,
        }
        for key in ("output_attentions", "output_hidden_states"):
            if key in kwargs:
                inputs[key] = kwargs[key]
        return inputs


__all__ = [
    "TransformerSeq2SeqForConditionalGeneration",
    "TransformerSeq2SeqModel",
    "TransformerSeq2SeqPreTrainedModel",
    "shift_tokens_right",
    "eager_attention_forward",
]
