"""A BERT-style bidirectional transformer encoder, written for speed and readability.

Features and where they come from:
- Post-LN encoder blocks, learned absolute positions, segment embeddings, MLM + NSP pretraining heads, pooled
  [CLS] classifier: BERT (Devlin et al., 2019, arXiv:1810.04805).
- Pre-LN blocks with a final LayerNorm (`pre_norm=True`): Xiong et al., 2020, "On Layer Normalization in the
  Transformer Architecture" (arXiv:2002.04745).
- Gated feed-forward blocks GEGLU / SwiGLU (`hidden_act="geglu"|"swiglu"`): Shazeer, 2020, "GLU Variants Improve
  Transformer" (arXiv:2002.05202).
- Bias-free linear layers, sparse MLM prediction and padded vocabulary for the one-GPU-one-day recipe: Geiping &
  Goldstein, 2022, "Cramming" (arXiv:2212.14034).
- Sentence-order prediction (`pretraining_objectives=["mlm", "sop"]`): ALBERT (Lan et al., 2020,
  arXiv:1909.11942).
- Replaced-token detection (`pretraining_objectives=["rtd"]`, `ToolkitBertForReplacedTokenDetection`): ELECTRA
  (Clark et al., 2020, arXiv:2003.10555): a small MLM generator sharing the embeddings, a per-token
  replaced/original head, loss `mlm + 50 * rtd`.
- Fused QKV projection and `torch.nn.functional.scaled_dot_product_attention` (FlashAttention, Dao et al., 2022,
  arXiv:2205.14135, on CUDA) through transformers' attention interface (`ALL_ATTENTION_FUNCTIONS`, signature
  `(module, query, key, value, attention_mask, scaling, dropout)`, as the Transformer family);
  `eager_attention_forward` is the plain reference implementation.

Padding: `attention_mask` (B, T) with 1 = token, 0 = pad. Padded keys get no attention. When the mask has no zeros
it is dropped, so SDPA runs without a mask (its fastest path).

Unpadding (`config.unpad_inputs=True`; MosaicBERT, Portes et al., 2023, arXiv:2312.17482; ModernBERT, Warner et al.,
2024, arXiv:2412.13663): when the mask has zeros, the real tokens are gathered into one (1, N, C) row before the
embeddings, every linear layer, norm and activation runs on those N tokens only, and attention runs within each
sequence: on CPU over a few length buckets (rows sorted by length, each bucket padded only to its own longest row), on
CUDA as one nested-jagged SDPA call (varlen kernels). Outputs equal the padded computation at real positions; the
padded positions of `last_hidden_state` are zeros. Falls back to the padded path for `output_attentions`, under
`torch.compile`, and when a row's first column is padding (left padding; the pooler reads column 0).

Using the encoder inside a seq2seq model: `ToolkitBertModel(config, add_pooling_layer=False)` called with
`input_ids` and `attention_mask` returns `last_hidden_state` (B, T, hidden_size); feed it, with the same
`attention_mask`, as the memory of a cross-attending decoder (e.g. as `encoder_outputs` / `encoder_hidden_states`
with `encoder_attention_mask`).

This file only imports torch, transformers and its sibling `configuration_bert.py`, so `save_pretrained` can ship
it next to the weights and `from_pretrained(..., trust_remote_code=True)` works without the toolkit installed.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .configuration_bert import ToolkitBertConfig

try:  # transformers v5: init functions that skip weights already loaded from a checkpoint
    from transformers import initialization as init
except ImportError:  # pragma: no cover - older transformers
    init = nn.init

# Logit given to padded vocabulary rows: exp() underflows to exactly 0 in fp32/bf16/fp16 softmax, yet finite, so
# label smoothing or fp16 arithmetic never produce inf/nan.
_PAD_LOGIT = -1.0e4


def _activation(name: str):
    """Element-wise activation for `name`; for gated names, the activation applied to the gate."""
    if name in ("gelu", "geglu"):
        return F.gelu
    if name == "gelu_new":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    if name == "swiglu":
        return F.silu
    raise ValueError(f"unknown activation {name!r}")


# --------------------------------------------------------------------------------------------------------------------
# outputs


@dataclass
class ToolkitBertMaskedLMOutput(ModelOutput):
    """Output of [`ToolkitBertForMaskedLM`].

    Args:
        loss: mean cross-entropy over positions whose label is not -100 (when `labels` is given).
        logits: dense mode: (B, T, vocab_size) scores for every position. Sparse mode (`config.sparse_prediction`
            and `labels` given): (N, vocab_size) scores for the N masked positions only, in row-major order of
            `labels`, i.e. aligned with `labels[labels != -100]`.
        prediction_labels: sparse mode: the (N,) labels aligned with `logits` (so masked-token accuracy is
            `(logits.argmax(-1) == prediction_labels).float().mean()`); dense mode: None.
        hidden_states, attentions: as in transformers (`output_hidden_states` / `output_attentions`).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    prediction_labels: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class ToolkitBertForPreTrainingOutput(ModelOutput):
    """Output of [`ToolkitBertForPreTraining`].

    Args:
        loss: `mlm_loss + sentence_loss` (each when its labels are given).
        mlm_loss, sentence_loss: the two parts, for logging.
        prediction_logits: MLM scores; same dense/sparse convention as [`ToolkitBertMaskedLMOutput.logits`].
        seq_relationship_logits: (B, 2) NSP/SOP scores (None when the config has no sentence objective).
        prediction_labels: sparse mode: labels aligned with `prediction_logits`; dense mode: None.
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    sentence_loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    seq_relationship_logits: torch.Tensor | None = None
    prediction_labels: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class ToolkitBertForReplacedTokenDetectionOutput(ModelOutput):
    """Output of [`ToolkitBertForReplacedTokenDetection`].

    Args:
        loss: `mlm_loss + config.rtd_loss_weight * rtd_loss` (when `labels` is given).
        mlm_loss: the generator's cross-entropy on the masked positions.
        rtd_loss: the discriminator's binary cross-entropy, a mean over the real (unpadded) positions.
        logits: (B, T) replaced-token scores of the discriminator (> 0: replaced).
        rtd_labels: (B, T) 1.0 where the discriminator's input differs from the original text (when `labels`).
        generator_logits: (N, vocab_size) generator scores at the N masked positions (row-major order of `labels`).
        prediction_labels: (N,) the original tokens at those positions.
        hidden_states, attentions: the discriminator's, as in transformers.
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    rtd_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    rtd_labels: torch.Tensor | None = None
    generator_logits: torch.Tensor | None = None
    prediction_labels: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


# --------------------------------------------------------------------------------------------------------------------
# attention


# Copied from toolkit.models.transformer.modeling_transformer.eager_attention_forward
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


class UnpaddedBatch:
    """Where the real tokens of a padded (B, T) batch are, and how attention groups them; built once per forward and
    shared by every layer (the host learns N and the bucket or sequence sizes here, so no layer waits for the device).

    Attributes:
        indices: (N,) flat positions `row * T + column` of the real tokens, row-major.
        batch_size, seq_len: B and T of the padded batch.
        first_token: (B,) index into the N tokens of each row's column 0 (the [CLS] the pooler reads).
        attention: "buckets" or "nested" (see `unpadded_attention_forward`).
        cu_seqlens: (B + 1,) offsets of each row's tokens among the N; min_seqlen / max_seqlen: host ints, so nested
            tensors never ask the device for them ("nested").
        buckets: list of (gather (b * T_b,), key mask (b, 1, 1, T_b) bool, keep (n_b,)) ("buckets"): positions among
            the N tokens forming a (b, T_b) padded bucket (padding slots repeat a real token and are masked as keys),
            and which of the b * T_b outputs are real; `restore` (N,) puts the concatenated kept outputs back in order.
    """

    def __init__(self, attention_mask: torch.Tensor, attention: str = "buckets", rows_per_bucket: int = 8):
        B, T = attention_mask.shape
        mask = attention_mask.bool()
        self.batch_size, self.seq_len, self.attention = B, T, attention
        self.indices = mask.reshape(-1).nonzero().squeeze(1)  # (N,)
        lengths = mask.sum(1)  # (B,) real tokens per row (holes allowed: columns need not be contiguous)
        offsets = F.pad(lengths.cumsum(0), (1, 0))  # (B + 1,)
        self.cu_seqlens = offsets
        self.first_token = offsets[:-1]
        self.buckets, self.restore = [], None
        if attention == "nested":
            self.min_seqlen, self.max_seqlen = (int(v) for v in torch.aminmax(lengths))  # host sync, once per forward
        if attention == "buckets":
            order = torch.argsort(lengths, stable=True)
            sizes = lengths[order].tolist()  # host sync, once per forward
            kept = []
            for start in range(0, B, rows_per_bucket):
                rows = order[start : start + rows_per_bucket]
                n, t_max = lengths[rows], max(sizes[start : start + rows_per_bucket])
                col = torch.arange(t_max, device=mask.device)
                real = col[None, :] < n[:, None]  # (b, T_b)
                gather = offsets[rows][:, None] + torch.minimum(col[None, :], (n - 1).clamp(min=0)[:, None])
                keep = real.reshape(-1).nonzero().squeeze(1)
                self.buckets.append((gather.reshape(-1), real[:, None, None, :], keep))
                kept.append(gather.reshape(-1)[keep])
            self.restore = torch.argsort(torch.cat(kept))

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> (1, N, ...): the real tokens in one row."""
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.indices).unsqueeze(0)

    def repad(self, x: torch.Tensor) -> torch.Tensor:
        """(1, N, C) -> (B, T, C) with zeros at padded positions."""
        flat = x.new_zeros(self.batch_size * self.seq_len, x.shape[-1]).index_copy(0, self.indices, x[0])
        return flat.view(self.batch_size, self.seq_len, -1)


def unpadded_attention_forward(qkv, batch: UnpaddedBatch, dropout_p=0.0, training=False):
    """Attention within each sequence of an unpadded batch. qkv: (N, 3, H, D) -> (N, H * D).

    "buckets": for each length bucket, gather its rows into (b, H, T_b, D) and run masked SDPA; the quadratic part
    pays only for the padding left inside a bucket (fastest here on CPU, where nested tensors fall back to a slow
    per-sequence path). "nested": one SDPA call on nested-jagged tensors, which CUDA serves with varlen
    FlashAttention / memory-efficient kernels, no padding at all."""
    N, _, H, D = qkv.shape
    p = dropout_p if training else 0.0
    if batch.attention == "nested":

        def jagged(x):  # (N, H, D) -> nested (B, H, j, D)
            return torch.nested.nested_tensor_from_jagged(
                x.contiguous(), batch.cu_seqlens, min_seqlen=batch.min_seqlen, max_seqlen=batch.max_seqlen
            ).transpose(1, 2)

        query, key, value = (jagged(t) for t in qkv.unbind(1))
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=p)  # nested (B, H, j, D)
        return out.transpose(1, 2).values().reshape(N, H * D)
    flat = qkv.reshape(N, 3 * H * D)
    outs = []
    for gather, key_mask, keep in batch.buckets:
        b, t = key_mask.shape[0], key_mask.shape[-1]
        x = flat.index_select(0, gather).view(b, t, 3, H, D)
        query, key, value = x.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (b, H, T_b, D)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, dropout_p=p)
        outs.append(out.transpose(1, 2).reshape(b * t, H * D).index_select(0, keep))
    return torch.cat(outs).index_select(0, batch.restore)  # (N, H * D)


class ToolkitBertSelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection."""

    def __init__(self, config: ToolkitBertConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False  # an encoder: every token sees every (unmasked) token
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.use_bias)
        self.out = nn.Linear(config.hidden_size, config.hidden_size, bias=config.use_bias)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        """attention_mask: (B, 1, 1, T) bool, None, or an `UnpaddedBatch` (then hidden_states is (1, N, C))."""
        B, T, C = hidden_states.shape
        if isinstance(attention_mask, UnpaddedBatch):
            qkv = self.qkv(hidden_states).view(T, 3, self.num_heads, self.head_dim)  # (N, 3, H, D)
            out = unpadded_attention_forward(qkv, attention_mask, self.dropout_p, self.training)  # (N, H * D)
            return self.out(out.unsqueeze(0)), None
        qkv = self.qkv(hidden_states).view(B, T, 3, self.num_heads, self.head_dim)  # (B, T, 3, H, D)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, T, D)
        implementation = self.config._attn_implementation or "sdpa"
        if output_attentions or implementation == "eager":
            attention_interface = eager_attention_forward
        else:
            attention_interface = ALL_ATTENTION_FUNCTIONS[implementation]
        out, probs = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            scaling=self.scaling,
            dropout=self.dropout_p if self.training else 0.0,
            is_causal=False,
        )  # (B, T, H, D)
        return self.out(out.reshape(B, T, C)), probs


class ToolkitBertMLP(nn.Module):
    """Position-wise feed-forward block, plain (act(x W1) W2) or gated ((x W) * act(x V)) W2."""

    def __init__(self, config: ToolkitBertConfig):
        super().__init__()
        self.gated = config.hidden_act in ("geglu", "swiglu")
        width = config.intermediate_size * (2 if self.gated else 1)
        self.fc_in = nn.Linear(config.hidden_size, width, bias=config.use_bias)
        self.fc_out = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.use_bias)
        self.act = _activation(config.hidden_act)

    def forward(self, x):
        x = self.fc_in(x)  # (B, T, I) or (B, T, 2I)
        if self.gated:
            x, gate = x.chunk(2, dim=-1)  # 2 x (B, T, I)
            x = x * self.act(gate)
        else:
            x = self.act(x)
        return self.fc_out(x)  # (B, T, C)


class ToolkitBertLayer(nn.Module):
    """One encoder block: post-LN `x = LN(x + f(x))` (BERT) or pre-LN `x = x + f(LN(x))`."""

    def __init__(self, config: ToolkitBertConfig):
        super().__init__()
        self.pre_norm = config.pre_norm
        self.attention = ToolkitBertSelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ToolkitBertMLP(config)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, attention_mask=None, output_attentions=False):
        if self.pre_norm:
            attn, probs = self.attention(self.attention_norm(x), attention_mask, output_attentions)
            x = x + self.dropout(attn)
            x = x + self.dropout(self.mlp(self.mlp_norm(x)))
        else:
            attn, probs = self.attention(x, attention_mask, output_attentions)
            x = self.attention_norm(x + self.dropout(attn))
            x = self.mlp_norm(x + self.dropout(self.mlp(x)))
        return x, probs


class ToolkitBertEncoder(nn.Module):
    def __init__(self, config: ToolkitBertConfig):
        super().__init__()
        self.layers = nn.ModuleList(ToolkitBertLayer(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.pre_norm else None
        self.gradient_checkpointing = False

    def forward(self, x, attention_mask=None, output_hidden_states=False, output_attentions=False):
        all_hidden = (x,) if output_hidden_states else None
        all_attn = () if output_attentions else None
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x, probs = self._gradient_checkpointing_func(layer.__call__, x, attention_mask, output_attentions)
            else:
                x, probs = layer(x, attention_mask, output_attentions)
            if output_hidden_states:
                all_hidden += (x,)
            if output_attentions:
                all_attn += (probs,)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if output_hidden_states:  # the last entry is the normed output, equal to last_hidden_state
                all_hidden = all_hidden[:-1] + (x,)
        return x, all_hidden, all_attn


class ToolkitBertEmbeddings(nn.Module):
    """word + learned absolute position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: ToolkitBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.padded_vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        T = x.shape[1]
        if position_ids is None:
            extra = self.position_embeddings.weight[:T]  # (T, C), broadcast over the batch
        else:
            extra = self.position_embeddings(position_ids)
        if token_type_ids is None:
            extra = extra + self.token_type_embeddings.weight[0]  # all segment 0: one row, no lookup
        else:
            extra = extra + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(x + extra))


class ToolkitBertPooler(nn.Module):
    """tanh(W h_[CLS] + b), the pooled output used by NSP/SOP and sequence classification."""

    def __init__(self, config: ToolkitBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        return torch.tanh(self.dense(hidden_states[:, 0]))  # (B, C)


class ToolkitBertMLMHead(nn.Module):
    """transform (dense, activation, LayerNorm) then a decoder tied to the word embeddings, plus an output bias.
    `input_size` (default `hidden_size`): the width it reads, e.g. an ELECTRA generator's, narrower than the
    embeddings it shares."""

    def __init__(self, config: ToolkitBertConfig, input_size: int | None = None):
        super().__init__()
        self.vocab_size = config.vocab_size
        self.dense = nn.Linear(input_size or config.hidden_size, config.hidden_size, bias=config.use_bias)
        self.act = _activation(config.hidden_act)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.padded_vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states):
        """(..., C) -> (..., padded_vocab_size) scores; padded rows score `_PAD_LOGIT`."""
        h = self.norm(self.act(self.dense(hidden_states)))
        bias = self.bias
        n_pad = self.decoder.weight.shape[0] - self.vocab_size
        if n_pad:
            bias = torch.cat([bias, bias.new_full((n_pad,), _PAD_LOGIT)])
        return F.linear(h, self.decoder.weight, bias)


class ToolkitBertRTDHead(nn.Module):
    """ELECTRA's discriminator head: dense, activation, then one replaced-token score per position."""

    def __init__(self, config: ToolkitBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = _activation(config.hidden_act)
        self.score = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden_states):
        return self.score(self.act(self.dense(hidden_states)))


# --------------------------------------------------------------------------------------------------------------------
# models


class ToolkitBertPreTrainedModel(PreTrainedModel):
    config_class = ToolkitBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    # Also the FSDP wrap list (accelerate_configs/fsdp.yaml): accelerate shards the input embeddings in a group of
    # their own, so listing the embeddings module here would shard the word embeddings twice.
    _no_split_modules = ["ToolkitBertLayer"]
    # an ELECTRA checkpoint (`ToolkitBertForReplacedTokenDetection`) also holds its generator and detection head:
    # every other head loads its encoder and leaves those behind without listing them
    _keys_to_ignore_on_load_unexpected = [r"^generator(_in|_head)?\.", r"^discriminator_head\."]

    def _init_weights(self, module):
        """BERT initialisation: N(0, initializer_range) for linear and embedding weights, zero biases, unit
        LayerNorms, zero padding embedding."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, ToolkitBertMLMHead):
            init.zeros_(module.bias)
        elif isinstance(module, ToolkitBertScalarMix):
            init.zeros_(module.scalar_parameters)
            init.ones_(module.gamma)
        elif isinstance(module, nn.LSTM):  # the task BiLSTM: as the toolkit's scratch BiLSTM
            for name, param in module.named_parameters():
                if name.startswith("weight_ih"):
                    init.xavier_uniform_(param)
                elif name.startswith("weight_hh"):
                    init.orthogonal_(param)
                else:
                    init.zeros_(param)
            if not getattr(module.bias_ih_l0, "_is_hf_initialized", False):
                with torch.no_grad():  # forget-gate bias 1 (Jozefowicz et al., 2015)
                    for name in ("bias_ih_l0", "bias_ih_l0_reverse"):
                        getattr(module, name)[module.hidden_size : 2 * module.hidden_size].fill_(1.0)

    @staticmethod
    def _resolve(value, default):
        return default if value is None else value

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Like transformers' `save_pretrained`; when the classes are registered for the Auto classes (see the
        package's `register()`), `config.json` gets an `auto_map` naming *every* head, so any Auto class can load the
        checkpoint with `trust_remote_code=True` where this package is not installed."""
        if type(self)._auto_class is not None:
            auto_map = dict(_AUTO_MAP)
            auto_map.update(getattr(self.config, "auto_map", None) or {})
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)


# Auto class -> "<file stem>.<class>" for the `auto_map` of saved checkpoints.
_AUTO_MAP = {
    "AutoConfig": "configuration_bert.ToolkitBertConfig",
    "AutoModel": "modeling_bert.ToolkitBertModel",
    "AutoModelForMaskedLM": "modeling_bert.ToolkitBertForMaskedLM",
    "AutoModelForPreTraining": "modeling_bert.ToolkitBertForPreTraining",
    "AutoModelForSequenceClassification": "modeling_bert.ToolkitBertForSequenceClassification",
}


def _prepare_attention_mask(attention_mask):
    """(B, T) 1/0 mask -> (B, 1, 1, T) bool mask for attention, or None when nothing is padded."""
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2:
        raise ValueError("attention_mask must have shape (batch, seq_len)")
    if not torch.compiler.is_compiling() and bool(attention_mask.all()):
        return None  # no padding: SDPA takes its mask-free (fastest) kernel
    return attention_mask.bool()[:, None, None, :]


class ToolkitBertModel(ToolkitBertPreTrainedModel):
    """The bare encoder: returns `last_hidden_state` (B, T, C) and, with the pooling layer, `pooler_output` (B, C).

    Also the encoder half of a seq2seq model: see the module docstring.
    """

    def __init__(self, config: ToolkitBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = ToolkitBertEmbeddings(config)
        self.encoder = ToolkitBertEncoder(config)
        self.pooler = ToolkitBertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        output_attentions = self._resolve(output_attentions, self.config.output_attentions)
        output_hidden_states = self._resolve(output_hidden_states, self.config.output_hidden_states)
        return_dict = self._resolve(return_dict, self.config.return_dict)

        unpadded = self._unpadded_batch(attention_mask, output_attentions)
        if unpadded is not None:
            return self._forward_unpadded(
                unpadded, input_ids, token_type_ids, position_ids, inputs_embeds, output_hidden_states, return_dict
            )
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        mask = _prepare_attention_mask(attention_mask)
        x, hidden_states, attentions = self.encoder(x, mask, output_hidden_states, output_attentions)
        pooled = self.pooler(x) if self.pooler is not None else None
        out = BaseModelOutputWithPooling(
            last_hidden_state=x, pooler_output=pooled, hidden_states=hidden_states, attentions=attentions
        )
        return out if return_dict else out.to_tuple()

    def _unpadded_batch(self, attention_mask, output_attentions):
        """An `UnpaddedBatch` when `config.unpad_inputs` applies to this call (see the module docstring), else None."""
        if not getattr(self.config, "unpad_inputs", False) or attention_mask is None or output_attentions:
            return None
        if attention_mask.dim() != 2 or torch.compiler.is_compiling():
            return None
        if bool(attention_mask.all()) or not bool(attention_mask[:, 0].all()):
            return None  # nothing to remove, or left padding (the pooler reads column 0)
        attention = getattr(self.config, "unpadded_attention", "auto")
        if attention == "auto":
            attention = "nested" if attention_mask.device.type == "cuda" else "buckets"
        return UnpaddedBatch(attention_mask, attention)

    def _forward_unpadded(
        self, batch, input_ids, token_type_ids, position_ids, inputs_embeds, output_hidden_states, return_dict
    ):
        B, T = batch.batch_size, batch.seq_len
        if position_ids is None:  # the column of each real token, as in the padded computation
            position_ids = (batch.indices % T).unsqueeze(0)
        else:
            position_ids = batch.unpad(position_ids.expand(B, T))
        x = self.embeddings(
            batch.unpad(input_ids) if input_ids is not None else None,
            batch.unpad(token_type_ids) if token_type_ids is not None else None,
            position_ids,
            batch.unpad(inputs_embeds) if inputs_embeds is not None else None,
        )  # (1, N, C)
        x, hidden_states, _ = self.encoder(x, batch, output_hidden_states, False)
        pooled = None
        if self.pooler is not None:
            pooled = self.pooler(x[0].index_select(0, batch.first_token).unsqueeze(1))  # [CLS] rows: (B, C)
        if hidden_states is not None:
            hidden_states = tuple(batch.repad(h) for h in hidden_states)
        out = BaseModelOutputWithPooling(
            last_hidden_state=batch.repad(x), pooler_output=pooled, hidden_states=hidden_states
        )
        return out if return_dict else out.to_tuple()


def _mlm_logits_and_loss(head, sequence_output, labels, sparse: bool, vocab_size: int, masked_positions=None):
    """Run the MLM head. Returns (logits, loss, prediction_labels) following the dense/sparse convention of
    `ToolkitBertMaskedLMOutput`. Sparse mode selects rows with `masked_positions` when given (the collator computes
    them on the host, so the device never has to report how many positions are masked); otherwise it finds them from
    `labels`, which makes the host wait for the device once per step."""
    if labels is not None and sparse:
        flat_labels = labels.reshape(-1)
        if masked_positions is None:
            masked_positions = (flat_labels != -100).nonzero().squeeze(1)
        prediction_labels = flat_labels.index_select(0, masked_positions)  # (N,)
        hidden = sequence_output.reshape(-1, sequence_output.shape[-1]).index_select(0, masked_positions)
        logits = head(hidden)  # (N, V_padded)
        loss = F.cross_entropy(logits.float(), prediction_labels)
    else:
        prediction_labels = None
        logits = head(sequence_output)  # (B, T, V_padded)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)
    if logits.shape[-1] != vocab_size:
        logits = logits[..., :vocab_size]  # drop padded vocabulary rows (a view, no copy)
    return logits, loss, prediction_labels


class ToolkitBertForMaskedLM(ToolkitBertPreTrainedModel):
    """Encoder + MLM head. With `config.sparse_prediction` and `labels`, the head only runs on masked positions."""

    _tied_weights_keys = {"cls.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: ToolkitBertConfig):
        super().__init__(config)
        self.bert = ToolkitBertModel(config, add_pooling_layer=False)
        self.cls = ToolkitBertMLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.cls.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.decoder = new_embeddings

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        masked_positions=None,
        **kwargs,
    ):
        """labels: (B, T) token ids at masked positions, -100 elsewhere. masked_positions: optional (N,) flat indices
        (row * T + column, ascending) of the labelled positions, as `DataCollatorForMLM(return_masked_positions=True)`
        returns them; used by sparse prediction to avoid a host-device synchronisation."""
        return_dict = self._resolve(return_dict, self.config.return_dict)
        enc = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits, loss, prediction_labels = _mlm_logits_and_loss(
            self.cls, enc.last_hidden_state, labels, self.config.sparse_prediction, self.config.vocab_size,
            masked_positions,
        )  # fmt: skip
        out = ToolkitBertMaskedLMOutput(
            loss=loss,
            logits=logits,
            prediction_labels=prediction_labels,
            hidden_states=enc.hidden_states,
            attentions=enc.attentions,
        )
        return out if return_dict else out.to_tuple()


class ToolkitBertForPreTraining(ToolkitBertPreTrainedModel):
    """Encoder + MLM head + (when `config.pretraining_objectives` has "nsp" or "sop") a 2-way sentence-relation head
    on the pooled [CLS] output. Label 0 = B follows A in order ("IsNext" / "in order"), 1 = random B / swapped."""

    _tied_weights_keys = {"cls.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: ToolkitBertConfig):
        super().__init__(config)
        has_sentence_head = config.sentence_objective is not None
        self.bert = ToolkitBertModel(config, add_pooling_layer=has_sentence_head)
        self.cls = ToolkitBertMLMHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if has_sentence_head else None
        self.post_init()

    def get_output_embeddings(self):
        return self.cls.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.decoder = new_embeddings

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        next_sentence_label=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        masked_positions=None,
        **kwargs,
    ):
        """labels: (B, T) MLM labels (-100 = not predicted); next_sentence_label: (B,) NSP/SOP labels;
        masked_positions: see [`ToolkitBertForMaskedLM.forward`]."""
        return_dict = self._resolve(return_dict, self.config.return_dict)
        enc = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits, mlm_loss, prediction_labels = _mlm_logits_and_loss(
            self.cls, enc.last_hidden_state, labels, self.config.sparse_prediction, self.config.vocab_size,
            masked_positions,
        )  # fmt: skip
        sentence_logits = sentence_loss = None
        if self.seq_relationship is not None:
            sentence_logits = self.seq_relationship(enc.pooler_output)  # (B, 2)
            if next_sentence_label is not None:
                sentence_loss = F.cross_entropy(sentence_logits.float(), next_sentence_label.reshape(-1))
        losses = [x for x in (mlm_loss, sentence_loss) if x is not None]
        loss = sum(losses) if losses else None
        out = ToolkitBertForPreTrainingOutput(
            loss=loss,
            mlm_loss=mlm_loss,
            sentence_loss=sentence_loss,
            prediction_logits=logits,
            seq_relationship_logits=sentence_logits,
            prediction_labels=prediction_labels,
            hidden_states=enc.hidden_states,
            attentions=enc.attentions,
        )
        return out if return_dict else out.to_tuple()


class ToolkitBertForReplacedTokenDetection(ToolkitBertPreTrainedModel):
    """ELECTRA pretraining (Clark et al., 2020): a small MLM generator predicts the masked positions, its samples
    replace them, and the encoder (`bert`, the discriminator) learns from *every* position whether its token is the
    original one. A masked LM learns from the masked positions only, which is why replaced-token detection learns
    more per token seen at small budgets. As in ELECTRA, generator and encoder share the embeddings (token,
    position, segment): the generator reads them through `generator_in` (to its narrower width), runs its own
    blocks (`generator`), and its MLM head (`generator_head`) decodes with the shared word embeddings, whose every
    row the generator's softmax trains. Fine-tuning loads `bert` (e.g. `AutoModelForSequenceClassification`); the
    generator and the detection head are left behind.

    With `labels` (the MLM collator's: original ids at the masked positions, -100 elsewhere) the forward pass runs
    generator, sampling and discriminator and returns both losses; without, it scores `input_ids` as they are."""

    _tied_weights_keys = {"generator_head.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: ToolkitBertConfig):
        super().__init__(config)
        generator_config = config.generator_config()
        self.bert = ToolkitBertModel(config, add_pooling_layer=False)
        self.discriminator_head = ToolkitBertRTDHead(config)
        self.generator_in = nn.Linear(config.hidden_size, generator_config.hidden_size)
        self.generator = ToolkitBertEncoder(generator_config)
        self.generator_head = ToolkitBertMLMHead(config, input_size=generator_config.hidden_size)
        self.post_init()

    def get_output_embeddings(self):
        return self.generator_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.generator_head.decoder = new_embeddings

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        masked_positions=None,
        **kwargs,
    ):
        """labels / masked_positions: as for [`ToolkitBertForMaskedLM.forward`]."""
        return_dict = self._resolve(return_dict, self.config.return_dict)
        common = {"attention_mask": attention_mask, "token_type_ids": token_type_ids, "position_ids": position_ids}
        mlm_loss = generator_logits = prediction_labels = rtd_labels = None
        discriminator_input = input_ids
        if labels is not None:
            flat_labels = labels.reshape(-1)
            if masked_positions is None:
                masked_positions = (flat_labels != -100).nonzero().squeeze(1)
            shared = self.bert.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, C)
            generated = self.generator(self.generator_in(shared), _prepare_attention_mask(attention_mask))[0]
            generator_logits, mlm_loss, prediction_labels = _mlm_logits_and_loss(
                self.generator_head, generated, labels, True, self.config.vocab_size, masked_positions
            )
            with torch.no_grad():  # sampling is not differentiated: the detection loss never reaches the generator
                sampled = torch.multinomial(F.softmax(generator_logits.float(), dim=-1), 1).squeeze(1)
                original = torch.where(labels == -100, input_ids, labels).reshape(-1)
                corrupted = original.index_copy(0, masked_positions, sampled)
                rtd_labels = (corrupted != original).to(torch.float).view_as(input_ids)
                discriminator_input = corrupted.view_as(input_ids)
        enc = self.bert(
            discriminator_input, **common, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True,
        )  # fmt: skip
        logits = self.discriminator_head(enc.last_hidden_state).squeeze(-1)  # (B, T)
        loss = rtd_loss = None
        if labels is not None:
            per_token = F.binary_cross_entropy_with_logits(logits.float(), rtd_labels, reduction="none")
            if attention_mask is None:
                rtd_loss = per_token.mean()
            else:
                real = attention_mask.to(per_token.dtype)
                rtd_loss = (per_token * real).sum() / real.sum().clamp(min=1.0)
            loss = mlm_loss + self.config.rtd_loss_weight * rtd_loss
        out = ToolkitBertForReplacedTokenDetectionOutput(
            loss=loss, mlm_loss=mlm_loss, rtd_loss=rtd_loss, logits=logits, rtd_labels=rtd_labels,
            generator_logits=generator_logits, prediction_labels=prediction_labels,
            hidden_states=enc.hidden_states, attentions=enc.attentions,
        )  # fmt: skip
        return out if return_dict else out.to_tuple()


class ToolkitBertScalarMix(nn.Module):
    """`gamma * sum_j softmax(s)_j * LayerNorm(h_j)` over the embedding output and every layer's output (ELMo's mix,
    Peters et al., 2018, Eq. 1; each layer normed first, since a pre-LN encoder's residual stream grows with depth)."""

    def __init__(self, num_layers: int, eps: float):
        super().__init__()
        self.scalar_parameters = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(1))
        self.eps = eps

    def forward(self, hidden_states: tuple) -> torch.Tensor:
        weights = torch.softmax(self.scalar_parameters, dim=0)  # (L + 1,)
        normed = [F.layer_norm(h, h.shape[-1:], eps=self.eps) for h in hidden_states]  # L + 1 x (B, T, C)
        return self.gamma * sum(w * h for w, h in zip(weights, normed))  # (B, T, C)


class ToolkitBertTaskBiLSTM(nn.Module):
    """The task encoder of `classifier_pooling="bilstm"`: packed BiLSTM over the mixed layers, then additive attention
    pooling (`a = softmax_t(v . tanh(W h_t))`, Yang et al., 2016) over the real tokens."""

    def __init__(self, config: ToolkitBertConfig):
        super().__init__()
        size = config.classifier_lstm_size
        self.lstm = nn.LSTM(config.hidden_size, size, batch_first=True, bidirectional=True)
        self.projection = nn.Linear(2 * size, size)
        self.context = nn.Linear(size, 1, bias=False)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # real tokens first, in their order: packing reads each row's first `length` positions, so left (or any)
        # padding is moved behind the sentence
        order = torch.argsort((attention_mask == 0).to(torch.int8), dim=1, stable=True)  # (B, T)
        x = x.gather(1, order.unsqueeze(-1).expand_as(x))  # (B, T, C)
        attention_mask = attention_mask.gather(1, order)
        lengths = attention_mask.long().sum(-1).cpu().clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        encoded, _ = self.lstm(packed)
        encoded, _ = nn.utils.rnn.pad_packed_sequence(encoded, batch_first=True, total_length=x.size(1))  # (B, T, 2H)
        scores = self.context(torch.tanh(self.projection(encoded))).squeeze(-1)  # (B, T)
        scores = scores.masked_fill(attention_mask == 0, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores.float(), dim=-1).to(encoded.dtype)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, encoded)  # (B, 2H)


class ToolkitBertForSequenceClassification(ToolkitBertPreTrainedModel):
    """Pooled [CLS] (or the masked mean of the last layer, or a BiLSTM over all layers: `config.classifier_pooling`)
    -> dropout -> linear. Loss follows `config.problem_type` as in transformers: regression (num_labels == 1, MSE),
    single_label_classification (integer labels, cross-entropy), or multi_label_classification (float multi-hot
    labels, BCE-with-logits)."""

    def __init__(self, config: ToolkitBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = ToolkitBertModel(config, add_pooling_layer=True)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        width = config.hidden_size
        if getattr(config, "classifier_pooling", "cls") == "bilstm":
            self.scalar_mix = ToolkitBertScalarMix(config.num_hidden_layers + 1, config.layer_norm_eps)
            self.task_encoder = ToolkitBertTaskBiLSTM(config)
            width = 2 * config.classifier_lstm_size
        self.classifier = nn.Linear(width, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        return_dict = self._resolve(return_dict, self.config.return_dict)
        output_hidden_states = self._resolve(output_hidden_states, self.config.output_hidden_states)
        enc = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states or self.config.classifier_pooling == "bilstm",
            return_dict=True,
        )
        if self.config.classifier_pooling == "bilstm":  # ELMo-style use of every layer
            hidden = enc.hidden_states[-1]
            mask = torch.ones(hidden.shape[:2], device=hidden.device) if attention_mask is None else attention_mask
            pooled = self.task_encoder(self.dropout(self.scalar_mix(enc.hidden_states)), mask)  # (B, 2H)
        elif getattr(self.config, "classifier_pooling", "cls") == "mean":  # masked mean of the last layer
            hidden = enc.last_hidden_state  # (B, T, C)
            mask = torch.ones(hidden.shape[:2], device=hidden.device) if attention_mask is None else attention_mask
            mask = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, C)
        else:
            pooled = enc.pooler_output
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = None
        if labels is not None:
            if self.config.problem_type is None:
                if self.num_labels == 1:
                    self.config.problem_type = "regression"
                elif labels.dtype in (torch.long, torch.int):
                    self.config.problem_type = "single_label_classification"
                else:
                    self.config.problem_type = "multi_label_classification"
            if self.config.problem_type == "regression":
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.squeeze(-1).float())
            elif self.config.problem_type == "single_label_classification":
                loss = F.cross_entropy(logits.float().view(-1, self.num_labels), labels.view(-1))
            else:
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        out = SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=enc.hidden_states if output_hidden_states else None,
            attentions=enc.attentions,
        )
        return out if return_dict else out.to_tuple()


__all__ = [
    "ToolkitBertPreTrainedModel",
    "ToolkitBertModel",
    "ToolkitBertForMaskedLM",
    "ToolkitBertForPreTraining",
    "ToolkitBertForSequenceClassification",
    "ToolkitBertForReplacedTokenDetection",
    "ToolkitBertForReplacedTokenDetectionOutput",
    "ToolkitBertMaskedLMOutput",
    "ToolkitBertForPreTrainingOutput",
    "eager_attention_forward",
    "unpadded_attention_forward",
    "UnpaddedBatch",
]
