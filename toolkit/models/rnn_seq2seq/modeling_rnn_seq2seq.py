"""RNN encoder-decoder with attention, written to be read next to the papers.

Features and where each comes from:
- Bidirectional RNN encoder whose per-token states (forward ; backward) are the "annotations" the decoder attends
  to; additive attention score v^T tanh(W1 s + W2 h) -- Bahdanau, Cho & Bengio (2015), "Neural Machine Translation by
  Jointly Learning to Align and Translate".
- Dot (s^T h) and bilinear / "general" (s^T W h) scores, attentional vector h~ = tanh(W_c [c ; s]) feeding the
  output layer, input feeding of h~ into the next step -- Luong, Pham & Manning (2015), "Effective Approaches to
  Attention-based Neural Machine Translation".
- GRU cells (Cho et al., 2014) or LSTM cells (Hochreiter & Schmidhuber, 1997); uniform [-0.1, 0.1] initialisation
  (Sutskever et al., 2014; Luong et al., 2015).
- Decoder initial state from the encoder's final states through a tanh bridge (Bahdanau et al., appendix A.2.2,
  which uses the backward state; here both directions).
- `attention_type="none"`: the encoder-decoder without attention, where the decoder sees only the final encoder
  state c (initial state, and the same context at every step: h~_t = tanh(W_c [c ; s_t])) -- the fixed-length
  vector of Cho et al. (2014) and Sutskever et al. (2014) whose bottleneck on long sentences motivated attention.

Decoder step t (Luong ordering: the new state is the attention query):
    s_t   = RNN([E y_{t-1} ; h~_{t-1}], s_{t-1})          (input feeding; h~_0 = 0)
    a_t   = softmax(score(s_t, h_1..h_S))                  (padding positions masked to weight 0)
    c_t   = sum_j a_tj h_j
    h~_t  = tanh(W_c [c_t ; s_t]);   p(y_t) = softmax(W_out h~_t)

During generation the cache is the recurrent state (`RNNSeq2SeqCache`: s_t, h~_t and the number of tokens seen),
so each step runs the decoder on one new token; beam search reorders it like a key/value cache.

This file imports only torch, transformers and its sibling configuration file, so `save_pretrained` can ship it and
`from_pretrained(..., trust_remote_code=True)` works where the toolkit is not installed.
"""

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

from .configuration_rnn_seq2seq import RNNSeq2SeqConfig

# Copied from toolkit.models.transformer.modeling_transformer.CACHE_NAME
# transformers renamed the cache argument and output field from `past_key_values` to `cache` during v5; `forward`
# accepts both names and outputs use the one the installed version's generation loop reads.
CACHE_NAME = "cache" if "cache" in Seq2SeqLMOutput.__dataclass_fields__ else "past_key_values"


# Copied from toolkit.models.transformer.modeling_transformer.shift_tokens_right
def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher forcing: decoder input at step t is the target token of step t-1 (`<start>` at step 0)."""
    shifted = labels.new_zeros(labels.shape)
    shifted[:, 1:] = labels[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax over source positions; mask (B, S) with 1 = token, 0 = padding (padding gets weight exactly 0)."""
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, :].bool(), torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


# --- attention: one class per scoring function --------------------------------------------------------------------
# Each takes the decoder states `query` (B, T, H) and the encoder states `memory` (B, S, M) and returns the raw
# scores (B, T, S) and the attention weights (B, T, S).


class DotAttention(nn.Module):
    """score(s, h) = s^T h (Luong et al., 2015, "dot"); needs H == M."""

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None = None):
        scores = torch.bmm(query, memory.transpose(1, 2))  # (B, T, S)
        return scores, masked_softmax(scores, mask)


class BilinearAttention(nn.Module):
    """score(s, h) = s^T W h (Luong et al., 2015, "general")."""

    def __init__(self, query_size: int, memory_size: int):
        super().__init__()
        self.W = nn.Linear(memory_size, query_size, bias=False)  # W h: (M) -> (H)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None = None):
        scores = torch.bmm(query, self.W(memory).transpose(1, 2))  # (B, T, H) x (B, H, S) -> (B, T, S)
        return scores, masked_softmax(scores, mask)


class AdditiveAttention(nn.Module):
    """score(s, h) = v^T tanh(W1 s + W2 h) (Bahdanau et al., 2015)."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int):
        super().__init__()
        self.W1 = nn.Linear(query_size, attention_size, bias=False)
        self.W2 = nn.Linear(memory_size, attention_size, bias=False)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None = None):
        hidden = torch.tanh(self.W1(query)[:, :, None, :] + self.W2(memory)[:, None, :, :])  # (B, T, S, A)
        scores = self.v(hidden).squeeze(-1)  # (B, T, S)
        return scores, masked_softmax(scores, mask)


def build_attention(config: RNNSeq2SeqConfig) -> nn.Module | None:
    if config.attention_type == "none":
        return None
    if config.attention_type == "dot":
        return DotAttention()
    if config.attention_type == "bilinear":
        return BilinearAttention(config.hidden_size, config.memory_size)
    return AdditiveAttention(
        config.hidden_size, config.memory_size, config.attention_hidden_size or config.hidden_size
    )


class RNNSeq2SeqCache:
    """The decoder's recurrent state between generation steps, reorderable for beam search.

    hidden: (L, B, H) decoder RNN state (for an LSTM, `cell` holds its (L, B, H) cell state); attentional: (B, H)
    the last h~ (input feeding); seen_tokens: how many target tokens have been consumed.
    """

    is_compileable = False
    is_croppable = False
    is_linear = (True,)

    def __init__(self, hidden: torch.Tensor, cell: torch.Tensor | None, attentional: torch.Tensor, seen_tokens: int):
        self.hidden = hidden
        self.cell = cell
        self.attentional = attentional
        self.seen_tokens = seen_tokens

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def reorder_cache(self, beam_idx: torch.LongTensor):
        """Keep, for every beam, the state of the hypothesis it continues."""
        self.hidden = self.hidden.index_select(1, beam_idx.to(self.hidden.device))
        if self.cell is not None:
            self.cell = self.cell.index_select(1, beam_idx.to(self.cell.device))
        self.attentional = self.attentional.index_select(0, beam_idx.to(self.attentional.device))

    def rnn_state(self):
        return self.hidden if self.cell is None else (self.hidden, self.cell)


class RNNSeq2SeqPreTrainedModel(PreTrainedModel):
    config_class = RNNSeq2SeqConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module):
        """Every parameter uniform in [-init_range, init_range]; the padding embedding row starts at zero."""
        r = self.config.init_range
        if isinstance(module, (nn.Linear, nn.GRU, nn.LSTM)):
            for param in module.parameters(recurse=False):
                init.uniform_(param, -r, r)
        elif isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -r, r)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The cache is the recurrent state (`RNNSeq2SeqCache`), created by the first forward, not a key/value cache.
        return False


def _rnn_class(cell_type: str):
    return nn.GRU if cell_type == "gru" else nn.LSTM


class RNNSeq2SeqEncoder(nn.Module):
    """Token embeddings -> (bi)directional multi-layer RNN; returns one state per source token (B, S, M)."""

    main_input_name = "input_ids"

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        pad = config.pad_token_id if config.encoder_pad_token_id is None else config.encoder_pad_token_id
        vocab = config.vocab_size if config.encoder_vocab_size is None else config.encoder_vocab_size
        self.embed_tokens = nn.Embedding(vocab, config.embedding_size, padding_idx=pad)
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = _rnn_class(config.cell_type)(
            config.embedding_size,
            config.encoder_hidden_size,
            num_layers=config.encoder_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.encoder_layers > 1 else 0.0,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput:
        x = self.dropout(self.embed_tokens(input_ids))  # (B, S, E)
        length = x.shape[1]
        if attention_mask is None:
            lengths = torch.full((x.shape[0],), length, dtype=torch.long)
        else:
            lengths = attention_mask.sum(-1).clamp(min=1).cpu()  # right padding: token count = length
        # Packing keeps the backward direction from reading padding and stops the forward one at the last token.
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.rnn(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=length)  # (B, S, M)
        output = BaseModelOutput(last_hidden_state=states, hidden_states=(x, states) if output_hidden_states else None)
        return output if return_dict is not False else output.to_tuple()


class RNNSeq2SeqDecoder(nn.Module):
    """Attentional RNN decoder: one RNN step, attention over the encoder states, attentional vector, per token."""

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        input_size = config.embedding_size + (config.hidden_size if config.input_feeding else 0)
        self.rnn = _rnn_class(config.cell_type)(
            input_size,
            config.hidden_size,
            num_layers=config.decoder_layers,
            batch_first=True,
            dropout=config.dropout if config.decoder_layers > 1 else 0.0,
        )
        # Initial decoder state s_0 = tanh(W_init [forward final ; backward final]) for every decoder layer.
        self.bridge = nn.Linear(config.memory_size, config.hidden_size * config.decoder_layers)
        self.attention = build_attention(config)
        self.combine = nn.Linear(config.memory_size + config.hidden_size, config.hidden_size, bias=False)  # W_c

    def final_state(self, memory: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The encoder's summary of the source (B, M): forward state at the last token ; backward at the first."""
        batch, length, _ = memory.shape
        if attention_mask is None:
            last = torch.full((batch,), length - 1, dtype=torch.long, device=memory.device)
        else:
            last = attention_mask.sum(-1).clamp(min=1).long().to(memory.device) - 1
        final = memory[torch.arange(batch, device=memory.device), last]  # state at each sequence's last token
        if self.config.bidirectional:
            half = self.config.encoder_hidden_size  # forward half at the last token, backward half at the first
            final = torch.cat([final[:, :half], memory[:, 0, half:]], dim=-1)  # (B, M)
        return final

    def initial_cache(self, memory: torch.Tensor, attention_mask: torch.Tensor | None) -> RNNSeq2SeqCache:
        batch = memory.shape[0]
        hidden = torch.tanh(self.bridge(self.final_state(memory, attention_mask)))  # (B, L*H)
        hidden = hidden.view(batch, self.config.decoder_layers, self.config.hidden_size).transpose(0, 1).contiguous()
        cell = torch.zeros_like(hidden) if self.config.cell_type == "lstm" else None  # (L, B, H)
        attentional = memory.new_zeros(batch, self.config.hidden_size)
        return RNNSeq2SeqCache(hidden, cell, attentional, seen_tokens=0)

    def forward(
        self,
        input_ids: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None,
        cache: RNNSeq2SeqCache | None = None,
    ):
        """input_ids (B, T) -> attentional vectors (B, T, H), attention weights (B, T, S) (None without attention),
        updated cache."""
        if cache is None:
            cache = self.initial_cache(memory, memory_mask)
        if self.attention is None:  # no attention: the only view of the source is its final state (B, 1, M)
            memory, memory_mask = self.final_state(memory, memory_mask)[:, None], None
        embedded = self.dropout(self.embed_tokens(input_ids))  # (B, T, E)
        state = cache.rnn_state()

        if not self.config.input_feeding:  # no feedback loop: run all steps of the RNN at once
            query, state = self.rnn(embedded, state)  # (B, T, H)
            context, weights = self._attend(query, memory, memory_mask)
            attentional = torch.tanh(self.combine(torch.cat([context, query], dim=-1)))  # (B, T, H)
        else:  # input feeding: step t needs h~_{t-1}
            feed = cache.attentional  # (B, H)
            outputs, all_weights = [], []
            for t in range(input_ids.shape[1]):
                step_input = torch.cat([embedded[:, t], feed], dim=-1)[:, None]  # (B, 1, E + H)
                query, state = self.rnn(step_input, state)  # (B, 1, H)
                context, weights = self._attend(query, memory, memory_mask)  # (B, 1, M), (B, 1, S)
                feed = torch.tanh(self.combine(torch.cat([context, query], dim=-1)))[:, 0]  # h~_t (B, H)
                outputs.append(feed)
                all_weights.append(weights)
            attentional = torch.stack(outputs, dim=1)  # (B, T, H)
            weights = None if self.attention is None else torch.cat(all_weights, dim=1)  # (B, T, S)

        hidden, cell = (state, None) if self.config.cell_type == "gru" else state
        new_cache = RNNSeq2SeqCache(hidden, cell, attentional[:, -1], cache.seen_tokens + input_ids.shape[1])
        return self.dropout(attentional), weights, new_cache

    def _attend(self, query, memory, memory_mask):
        if self.attention is None:  # memory is the final encoder state (B, 1, M): the same context at every step
            return memory.expand(-1, query.shape[1], -1), None
        _, weights = self.attention(query, memory, memory_mask)  # (B, T, S)
        context = torch.bmm(weights, memory)  # (B, T, M)
        return context, weights


# Copied from toolkit.models.transformer.modeling_transformer._as_encoder_output
def _as_encoder_output(encoder_outputs) -> BaseModelOutput:
    if isinstance(encoder_outputs, BaseModelOutput):
        return encoder_outputs
    if isinstance(encoder_outputs, dict):
        return BaseModelOutput(**encoder_outputs)
    encoder_outputs = tuple(encoder_outputs)  # return_dict=False tuple: (last_hidden_state, hidden_states, attentions)
    return BaseModelOutput(*(encoder_outputs + (None,) * (3 - len(encoder_outputs))))


class RNNSeq2SeqForConditionalGeneration(RNNSeq2SeqPreTrainedModel, GenerationMixin):
    """RNN encoder-decoder with attention (or without: `attention_type="none"`) and an output layer over the
    target vocabulary.

    `labels` (B, T) are the target token ids (-100 = ignored); decoder inputs are the labels shifted right behind
    `config.decoder_start_token_id` unless `decoder_input_ids` are given. `cross_attentions` is a 1-tuple holding
    the alignment weights as (B, 1, T, S) (one "layer" with one "head"), the layout of Transformer attentions;
    it is `None` for `attention_type="none"`, which has no alignment.
    """

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__(config)
        self.encoder = RNNSeq2SeqEncoder(config)
        self.decoder = RNNSeq2SeqDecoder(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._tied_weights_keys = (
            {"lm_head.weight": "decoder.embed_tokens.weight"} if config.tie_word_embeddings else None
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding):
        self.encoder.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear):
        self.lm_head = value

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
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: RNNSeq2SeqCache | None = None,
        past_key_values: RNNSeq2SeqCache | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        cache = cache if cache is not None else past_key_values
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states
            )
        encoder_outputs = _as_encoder_output(encoder_outputs)
        memory = encoder_outputs.last_hidden_state  # (B, S, M)

        attentional, weights, new_cache = self.decoder(decoder_input_ids, memory, attention_mask, cache=cache)
        logits = self.lm_head(attentional)  # (B, T, V)

        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.float().view(-1, logits.shape[-1]),
                labels.view(-1).to(logits.device),
                ignore_index=-100,
                label_smoothing=self.config.label_smoothing,
            )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cross_attentions=(weights[:, None],) if output_attentions and weights is not None else None,  # (B,1,T,S)
            decoder_hidden_states=(attentional,) if output_hidden_states else None,
            encoder_last_hidden_state=memory,
            encoder_hidden_states=encoder_outputs.hidden_states,
            **{CACHE_NAME: new_cache if use_cache else None},
        )
        return output if return_dict is not False else output.to_tuple()

    # Copied from toolkit.models.transformer.modeling_transformer.TransformerSeq2SeqForConditionalGeneration.prepare_inputs_for_generation with decoder_attention_mask removed
    def prepare_inputs_for_generation(
        self,
        decoder_input_ids: torch.Tensor,
        cache: RNNSeq2SeqCache | None = None,
        past_key_values: RNNSeq2SeqCache | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> dict:
        """Feed the decoder only the tokens its recurrent state has not consumed yet (all of them on step one)."""
        cache = cache if cache is not None else past_key_values
        if cache is not None and cache.get_seq_length() > 0:
            decoder_input_ids = decoder_input_ids[:, cache.get_seq_length() :]
        inputs = {
            "decoder_input_ids": decoder_input_ids,
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
    "AdditiveAttention",
    "BilinearAttention",
    "DotAttention",
    "RNNSeq2SeqCache",
    "RNNSeq2SeqForConditionalGeneration",
    "RNNSeq2SeqPreTrainedModel",
    "masked_softmax",
]
