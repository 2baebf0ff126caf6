"""ELMo: a bidirectional LSTM language model whose layers give contextual word representations.

Features and where they come from:
- Character CNN token embedder (Kim et al., 2016, "Character-Aware Neural Language Models"; as used by Peters et
  al., 2018): UTF-8 byte embeddings, convolutions of several widths max-pooled over the word, highway layers
  (Srivastava et al., 2015) and a linear projection. Every word, also one never seen in training, gets a
  representation. The CNN runs once per distinct word of a batch (an exact shortcut).
- Word-embedding token embedder as a fast alternative for small models.
- Forward and backward multi-layer LSTMs with a projection layer (Sak et al., 2014, "LSTM-based deep recurrent
  neural network architectures"), residual connections between layers, optional cell and projection clipping, as in
  bilm-tf (Peters et al., 2018). The fused `nn.LSTM(proj_size=...)` kernel is used whenever clipping is off; a
  step-wise cell over the same parameters implements clipping. Initial LSTM states can be passed in and final states
  returned, so training can carry state across consecutive windows of a stream as bilm-tf did.
- Shared softmax over a word vocabulary for both directions: full softmax, or an adaptive softmax (Grave et al.,
  2017, "Efficient softmax approximation for GPUs") for large vocabularies. Loss = mean of forward and backward NLL.
- Downstream use (Peters et al., 2018, Eq. 1): a learned scalar mix of all layers (softmax-normalised weights times
  gamma, optional layer norm); for classification followed by a BiLSTM with attention pooling (Yang et al., 2016,
  "Hierarchical Attention Networks for Document Classification"). The biLM is frozen by default. Optionally a
  context-independent, trainable word embedding over the task's own vocabulary is concatenated with the ELMo vector
  at the task BiLSTM's input, as Peters et al. (2018, section 3.3) concatenate it with GloVe vectors, so a frozen
  biLM does not hide word identity from the classifier.

There is no self-attention in this family, so there is no SDPA path; the attention pooling is a small additive
attention written out in `ElmoAttentionPooling`.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput

from .configuration_elmo import ElmoConfig

# States of all LSTMs: h of shape (num_layers, 2, B, projection_dim), c of shape (num_layers, 2, B, cell_size);
# index 0 of the second axis is the forward direction, 1 the backward direction.
ElmoStates = tuple[torch.Tensor, torch.Tensor]


@dataclass
class ElmoModelOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, 2 * projection_dim)`):
        Top biLM layer, forward and backward states concatenated.
    hidden_states (`tuple(torch.FloatTensor)`, `num_layers + 1` tensors of shape
        `(batch_size, sequence_length, 2 * projection_dim)`):
        Layer 0 is the context-free token representation duplicated (`[x; x]`), layers 1..L the concatenated forward
        and backward LSTM outputs. Padded positions are zero.
    stacked_hidden_states (`torch.FloatTensor` of shape `(batch_size, num_layers + 1, sequence_length,
        2 * projection_dim)`):
        The same layers stacked in one tensor (input of a scalar mix).
    final_states (`tuple(torch.FloatTensor)`, *optional*):
        `(h, c)` after the last valid token of each direction (`h`: `(num_layers, 2, batch_size, projection_dim)`,
        `c`: `(num_layers, 2, batch_size, cell_size)`), returned when `return_final_states=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    stacked_hidden_states: torch.FloatTensor | None = None
    final_states: tuple[torch.FloatTensor, torch.FloatTensor] | None = None


@dataclass
class ElmoLanguageModelingOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*): mean of `forward_loss` and `backward_loss`.
    forward_loss (`torch.FloatTensor` of shape `()`, *optional*): mean NLL of the next word (forward LM).
    backward_loss (`torch.FloatTensor` of shape `()`, *optional*): mean NLL of the previous word (backward LM).
    forward_logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`, *optional*):
        Forward LM scores (position t predicts word t+1); full softmax only.
    backward_logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`, *optional*):
        Backward LM scores (position t predicts word t-1); full softmax only.
    num_forward_targets / num_backward_targets (`torch.LongTensor` of shape `()`, *optional*):
        Number of predicted words in each direction (to aggregate perplexities over batches).
    hidden_states, final_states: as in [`ElmoModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    forward_loss: torch.FloatTensor | None = None
    backward_loss: torch.FloatTensor | None = None
    forward_logits: torch.FloatTensor | None = None
    backward_logits: torch.FloatTensor | None = None
    num_forward_targets: torch.LongTensor | None = None
    num_backward_targets: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    final_states: tuple[torch.FloatTensor, torch.FloatTensor] | None = None


# --------------------------------------------------------------------------------------------------------------------
# token embedders
# --------------------------------------------------------------------------------------------------------------------


class ElmoHighway(nn.Module):
    """Highway layers: `y = g * relu(W_h x) + (1 - g) * x` with gate `g = sigmoid(W_g x)`."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            transform, gate = layer(x).chunk(2, dim=-1)  # (N, D) each
            gate = torch.sigmoid(gate)
            x = gate * F.relu(transform) + (1.0 - gate) * x
        return x


class ElmoCharacterEncoder(nn.Module):
    """Character CNN: (B, T, C) character ids -> (B, T, projection_dim) context-free word vectors."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        self.char_embeddings = nn.Embedding(config.char_vocab_size, config.char_embedding_dim, padding_idx=0)
        self.padding_char_id = config.char_vocab_size - 1  # padding inside a word (bilm-tf's 260, shifted by one)
        self.max_width = max(width for width, _ in config.char_cnn_filters)
        self.convs = nn.ModuleList(
            nn.Conv1d(config.char_embedding_dim, num, width) for width, num in config.char_cnn_filters
        )
        num_filters = sum(num for _, num in config.char_cnn_filters)
        self.activation = torch.tanh if config.char_cnn_activation == "tanh" else F.relu
        self.highway = ElmoHighway(num_filters, config.num_highway_layers)
        self.projection = nn.Linear(num_filters, config.projection_dim)

    def embed_words(self, chars: torch.Tensor) -> torch.Tensor:
        """(N, C) character ids of N words -> (N, projection_dim)."""
        x = self.char_embeddings(chars).transpose(1, 2)  # (N, E, C)
        # max-pool every filter over the character positions, then the activation (bilm-tf order)
        pooled = [self.activation(conv(x).max(dim=-1).values) for conv in self.convs]  # each (N, num_filters_w)
        x = torch.cat(pooled, dim=-1)  # (N, F)
        return self.projection(self.highway(x))  # (N, P)

    def forward(self, char_ids: torch.Tensor, plan: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, P). `plan`: `character_cnn_plan(char_ids, config)` made on the host (see there)."""
        batch_size, seq_len, _ = char_ids.shape
        unique_words, inverse = (
            plan if plan is not None else distinct_words(char_ids, self.padding_char_id, self.max_width)
        )
        embedded = self.embed_words(unique_words)  # (N, P)
        return embedded[inverse].view(batch_size, seq_len, -1)  # (B, T, P)


def distinct_words(char_ids: torch.Tensor, padding_char_id: int, max_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, C) character ids -> (unique_words (N, C'), inverse (B*T,)): words repeat a lot within a batch, so the
    CNN embeds each distinct character sequence once and scatters back. Exact shortcut: character positions beyond
    the longest word + the widest filter only add windows made of padding characters, identical to windows that
    remain, so they cannot change the max-pooling."""
    num_chars = char_ids.shape[-1]
    unique_words, inverse = torch.unique(char_ids.reshape(-1, num_chars), dim=0, return_inverse=True)
    is_char = (unique_words != padding_char_id) & (unique_words != 0)
    positions = torch.arange(1, num_chars + 1, device=char_ids.device)
    longest = int((is_char * positions).amax()) if unique_words.numel() else 0
    return unique_words[:, : min(num_chars, longest + max_width)], inverse


def character_cnn_plan(char_ids: torch.Tensor, config: ElmoConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """What the character CNN would otherwise compute on the device, and wait for (`torch.unique` and the longest
    word): a data collator calls this on the CPU `char_ids` and passes it as `char_plan` (see
    `ElmoForLanguageModeling.forward`)."""
    return distinct_words(char_ids, config.char_vocab_size - 1, max(width for width, _ in config.char_cnn_filters))


class ElmoWordEmbedder(nn.Module):
    """Lookup-table token embedder: (B, T) word ids -> (B, T, projection_dim)."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        dim = config.word_embedding_dim or config.projection_dim
        self.word_embeddings = nn.Embedding(config.vocab_size, dim, padding_idx=config.pad_token_id)
        self.projection = nn.Linear(dim, config.projection_dim) if dim != config.projection_dim else None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(input_ids)  # (B, T, D)
        return self.projection(x) if self.projection is not None else x


# --------------------------------------------------------------------------------------------------------------------
# biLSTM encoder
# --------------------------------------------------------------------------------------------------------------------


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each right-padded sequence of x (B, T, ...) within its own length; padding stays in place."""
    if lengths is None:
        return x.flip(1)
    seq_len = x.size(1)
    positions = torch.arange(seq_len, device=x.device)
    index = lengths[:, None] - 1 - positions[None, :]  # (B, T)
    index = torch.where(index >= 0, index, positions[None, :])
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class ElmoLstmLayer(nn.Module):
    """One LSTM layer of one direction. Parameters live in a single-layer `nn.LSTM` (`proj_size` when the projection
    is smaller than the cell), so the fused kernel and the step-wise path share one state dict."""

    def __init__(self, input_size: int, config: ElmoConfig):
        super().__init__()
        if config.projection_dim > config.cell_size:
            raise ValueError("projection_dim must be <= cell_size")
        proj_size = config.projection_dim if config.projection_dim < config.cell_size else 0
        self.lstm = nn.LSTM(input_size, config.cell_size, proj_size=proj_size, batch_first=True)
        self.cell_clip = config.cell_clip
        self.proj_clip = config.proj_clip
        self.implementation = config.lstm_implementation

    def use_fused(self) -> bool:
        if self.implementation == "auto":
            return not (self.cell_clip or self.proj_clip)
        return self.implementation == "fused"

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None,
        state: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x: (B, T, I), lengths: (B,) or None (no padding), state: ((B, P), (B, C)) or None.
        Returns outputs (B, T, P) and the state after each sequence's last valid step."""
        if self.use_fused():
            return self._fused(x, lengths, state)
        return self._stepwise(x, lengths, state)

    def _fused(self, x, lengths, state):
        hx = None if state is None else (state[0].unsqueeze(0).contiguous(), state[1].unsqueeze(0).contiguous())
        if lengths is None:
            out, (h, c) = self.lstm(x, hx)  # (B, T, P), (1, B, P), (1, B, C)
        else:
            packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
            out, (h, c) = self.lstm(packed, hx)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))  # (B, T, P)
        return out, (h.squeeze(0), c.squeeze(0))

    def _stepwise(self, x, lengths, state):
        lstm = self.lstm
        batch_size, seq_len, _ = x.shape
        # Input contribution of all steps at once: (B, T, 4C), gate order i, f, g, o as in nn.LSTM
        x_gates = F.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)
        if state is None:
            h = x_gates.new_zeros(batch_size, lstm.proj_size or lstm.hidden_size)
            c = x_gates.new_zeros(batch_size, lstm.hidden_size)
        else:
            h, c = state
        valid = None
        if lengths is not None:
            valid = (torch.arange(seq_len, device=x.device)[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
        outputs = []
        for t in range(seq_len):
            gates = x_gates[:, t] + F.linear(h, lstm.weight_hh_l0)  # (B, 4C)
            in_gate, forget_gate, cell_input, out_gate = gates.chunk(4, dim=-1)
            c_new = torch.sigmoid(forget_gate) * c + torch.sigmoid(in_gate) * torch.tanh(cell_input)
            if self.cell_clip:
                c_new = c_new.clamp(-self.cell_clip, self.cell_clip)
            h_new = torch.sigmoid(out_gate) * torch.tanh(c_new)  # (B, C)
            if lstm.proj_size:
                h_new = F.linear(h_new, lstm.weight_hr_l0)  # (B, P)
            if self.proj_clip:
                h_new = h_new.clamp(-self.proj_clip, self.proj_clip)
            outputs.append(h_new)
            if valid is None:
                h, c = h_new, c_new
            else:  # padded steps keep the state, so the final state is the one after the last valid word
                h = torch.where(valid[:, t], h_new, h)
                c = torch.where(valid[:, t], c_new, c)
        return torch.stack(outputs, dim=1), (h, c)  # (B, T, P)


class ElmoBiLstmEncoder(nn.Module):
    """Independent forward and backward LSTM stacks (no information flows between directions)."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        self.num_layers = config.num_layers
        self.use_residual = config.use_residual
        self.forward_layers = nn.ModuleList(
            ElmoLstmLayer(config.projection_dim, config) for _ in range(config.num_layers)
        )
        self.backward_layers = nn.ModuleList(
            ElmoLstmLayer(config.projection_dim, config) for _ in range(config.num_layers)
        )
        self.dropout = nn.Dropout(config.dropout)

    def _run_stack(self, layers, x, lengths, states, direction):
        outputs, final_h, final_c = [], [], []
        for index, layer in enumerate(layers):
            state = None if states is None else (states[0][index, direction], states[1][index, direction])
            out, (h, c) = layer(self.dropout(x), lengths, state)  # (B, T, P)
            if self.use_residual and index > 0:
                out = out + x
            outputs.append(out)
            final_h.append(h)
            final_c.append(c)
            x = out
        return outputs, torch.stack(final_h), torch.stack(final_c)  # list of (B, T, P), (L, B, P), (L, B, C)

    def forward(
        self,
        forward_inputs: torch.Tensor,
        forward_lengths: torch.Tensor | None,
        backward_inputs: torch.Tensor,
        backward_lengths: torch.Tensor | None,
        initial_states: ElmoStates | None = None,
    ):
        """Inputs are (B, T, P) in natural word order; the backward stack reads them right to left (within each
        sequence's length). Returns per-layer outputs of both directions, in natural order, and final states."""
        fwd_outputs, fwd_h, fwd_c = self._run_stack(
            self.forward_layers, forward_inputs, forward_lengths, initial_states, 0
        )
        reversed_inputs = reverse_padded(backward_inputs, backward_lengths)
        bwd_outputs, bwd_h, bwd_c = self._run_stack(
            self.backward_layers, reversed_inputs, backward_lengths, initial_states, 1
        )
        bwd_outputs = [reverse_padded(out, backward_lengths) for out in bwd_outputs]
        final_states = (torch.stack([fwd_h, bwd_h], dim=1), torch.stack([fwd_c, bwd_c], dim=1))  # (L, 2, B, *)
        return fwd_outputs, bwd_outputs, final_states


# --------------------------------------------------------------------------------------------------------------------
# pretrained model classes
# --------------------------------------------------------------------------------------------------------------------


def _lengths_from_mask(attention_mask: torch.Tensor | None, seq_len: int) -> torch.Tensor | None:
    """(B, T) right-padded mask -> (B,) lengths, or None when nothing is padded (fast path, no packing)."""
    if attention_mask is None:
        return None
    lengths = attention_mask.long().sum(dim=-1)
    if bool((lengths == seq_len).all()):
        return None
    return lengths


class ElmoPreTrainedModel(PreTrainedModel):
    config_class = ElmoConfig
    config: ElmoConfig
    base_model_prefix = "elmo"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["ElmoLstmLayer"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also list the family's other heads in `auto_map`, so a biLM checkpoint loads with `AutoModel` or
        `AutoModelForSequenceClassification` (and `trust_remote_code=True`) as well as with its own Auto class."""
        if getattr(self, "_auto_class", None) is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            for auto_name, class_name in (
                ("AutoModel", "ElmoModel"),
                ("AutoModelForPreTraining", "ElmoForLanguageModeling"),
                ("AutoModelForSequenceClassification", "ElmoForSequenceClassification"),
            ):
                auto_map.setdefault(auto_name, f"modeling_elmo.{class_name}")
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module):
        """bilm-tf style initialisation. Only `nn.init` functions are used on whole tensors (loaded weights are not
        re-initialised by `from_pretrained`); slices are written only to tensors that have not been loaded."""
        std = self.config.initializer_range
        if isinstance(module, ElmoCharacterEncoder):
            nn.init.uniform_(module.char_embeddings.weight, -1.0, 1.0)
            if not getattr(module.char_embeddings.weight, "_is_hf_initialized", False):
                module.char_embeddings.weight[0].zero_()
            for conv in module.convs:
                nn.init.uniform_(conv.weight, -0.05, 0.05)
                nn.init.zeros_(conv.bias)
            for layer in module.highway.layers:
                nn.init.normal_(layer.weight, std=(1.0 / layer.in_features) ** 0.5)
                nn.init.zeros_(layer.bias)
                if not getattr(layer.bias, "_is_hf_initialized", False):
                    layer.bias[layer.in_features :].fill_(-2.0)  # gate starts closed: carry the input
            nn.init.normal_(module.projection.weight, std=(1.0 / module.projection.in_features) ** 0.5)
            nn.init.zeros_(module.projection.bias)
        elif isinstance(module, ElmoWordEmbedder):
            nn.init.normal_(module.word_embeddings.weight, std=0.1)
            if module.word_embeddings.padding_idx is not None and not getattr(
                module.word_embeddings.weight, "_is_hf_initialized", False
            ):
                module.word_embeddings.weight[module.word_embeddings.padding_idx].zero_()
            if module.projection is not None:
                nn.init.xavier_uniform_(module.projection.weight)
                nn.init.zeros_(module.projection.bias)
        elif isinstance(module, ElmoLstmLayer):
            lstm = module.lstm
            for name, param in lstm.named_parameters():
                if name.startswith("weight"):
                    nn.init.xavier_uniform_(param)
                else:
                    nn.init.zeros_(param)
            if not getattr(lstm.bias_ih_l0, "_is_hf_initialized", False):
                lstm.bias_ih_l0[lstm.hidden_size : 2 * lstm.hidden_size].fill_(1.0)  # forget-gate bias
        elif isinstance(module, ElmoScalarMix):
            nn.init.zeros_(module.scalar_parameters)
            nn.init.ones_(module.gamma)
        elif isinstance(module, ElmoTaskWordEmbedder):
            nn.init.normal_(module.weight, std=0.1)
            if not getattr(module.weight, "_is_hf_initialized", False):
                module.weight[0].zero_()  # padding
        elif isinstance(module, ElmoAttentionPooling):
            nn.init.xavier_uniform_(module.projection.weight)
            nn.init.zeros_(module.projection.bias)
            nn.init.normal_(module.context, std=std)
        elif isinstance(module, ElmoForLanguageModeling) and module.softmax is not None:
            nn.init.normal_(module.softmax.weight, std=(1.0 / module.softmax.in_features) ** 0.5)
            nn.init.zeros_(module.softmax.bias)
        elif isinstance(module, nn.Linear) and not isinstance(module.weight, nn.UninitializedParameter):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):
            for name, param in module.named_parameters():
                if name.startswith("weight"):
                    nn.init.xavier_uniform_(param)
                else:
                    nn.init.zeros_(param)


class ElmoModel(ElmoPreTrainedModel):
    """The biLM without its softmax: returns every layer's representation (see [`ElmoModelOutput`])."""

    def __init__(self, config: ElmoConfig):
        super().__init__(config)
        if config.token_embedder == "char_cnn":
            self.token_embedder = ElmoCharacterEncoder(config)
        else:
            self.token_embedder = ElmoWordEmbedder(config)
        self.encoder = ElmoBiLstmEncoder(config)
        self.post_init()

    def get_input_embeddings(self):
        if isinstance(self.token_embedder, ElmoWordEmbedder):
            return self.token_embedder.word_embeddings
        return None

    def embed_tokens(self, input_ids=None, char_ids=None, char_plan=None) -> torch.Tensor:
        """Context-free token vectors (B, T, P) from `char_ids` (B, T, C) or `input_ids` (B, T)."""
        if self.config.token_embedder == "char_cnn":
            if char_ids is None:
                raise ValueError("This ELMo uses a character CNN: pass `char_ids` (the tokenizer returns them).")
            return self.token_embedder(char_ids, char_plan)
        if input_ids is None:
            raise ValueError("This ELMo uses word embeddings: pass `input_ids`.")
        return self.token_embedder(input_ids)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        char_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        initial_states: ElmoStates | None = None,
        return_final_states: bool = False,
        backward_input_ids: torch.LongTensor | None = None,
        backward_char_ids: torch.LongTensor | None = None,
        backward_attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        char_plan: tuple[torch.Tensor, torch.Tensor] | None = None,
        backward_char_plan: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs,
    ) -> ElmoModelOutput | tuple:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            Word ids (needed by the word-embedding input and by the LM loss).
        char_ids (`torch.LongTensor` of shape `(batch_size, sequence_length, max_characters_per_token)`):
            Character ids of every word (needed by the character CNN).
        attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`):
            1 for words, 0 for (right) padding.
        initial_states (`tuple(torch.Tensor)`, *optional*):
            `(h, c)` LSTM states to start from, shaped like `final_states`. The backward entries are the states
            "after" the window, i.e. coming from the text to its right.
        return_final_states (`bool`, *optional*): also return the states after the last valid word.
        backward_input_ids / backward_char_ids / backward_attention_mask (*optional*):
            A different window for the backward LM (bilm-tf trains the backward LM on its own stream so that its state
            can be carried right-to-left). Defaults to the forward inputs.
        char_plan / backward_char_plan (*optional*): `character_cnn_plan(char_ids, config)` of `char_ids` /
            `backward_char_ids`, made on the host by a data collator, so that the character CNN need not ask the
            device which words are distinct.
        """
        return_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        output, _ = self.encode(
            input_ids,
            char_ids,
            attention_mask,
            initial_states,
            return_final_states,
            backward_input_ids,
            backward_char_ids,
            backward_attention_mask,
            char_plan=char_plan,
            backward_char_plan=backward_char_plan,
        )
        return output if return_dict else output.to_tuple()

    def encode(
        self,
        input_ids=None,
        char_ids=None,
        attention_mask=None,
        initial_states=None,
        return_final_states=False,
        backward_input_ids=None,
        backward_char_ids=None,
        backward_attention_mask=None,
        build_representations=True,
        char_plan=None,
        backward_char_plan=None,
    ) -> tuple[ElmoModelOutput, tuple[torch.Tensor, torch.Tensor]]:
        """`forward` that also returns the unmasked top LSTM outputs of each direction ((B, T, P) each); with
        `build_representations=False` the layer tensors are not assembled (the LM head does not need them)."""
        forward_inputs = self.embed_tokens(input_ids, char_ids, char_plan)  # (B, T, P)
        seq_len = forward_inputs.size(1)
        forward_lengths = _lengths_from_mask(attention_mask, seq_len)
        if backward_input_ids is None and backward_char_ids is None:
            backward_inputs, backward_lengths = forward_inputs, forward_lengths
            backward_attention_mask = attention_mask
        else:
            backward_inputs = self.embed_tokens(backward_input_ids, backward_char_ids, backward_char_plan)
            backward_lengths = _lengths_from_mask(backward_attention_mask, backward_inputs.size(1))

        fwd_outputs, bwd_outputs, final_states = self.encoder(
            forward_inputs, forward_lengths, backward_inputs, backward_lengths, initial_states
        )
        if not build_representations:
            output = ElmoModelOutput(final_states=final_states if return_final_states else None)
            return output, (fwd_outputs[-1], bwd_outputs[-1])
        hidden_states = [torch.cat([forward_inputs, backward_inputs], dim=-1)]  # layer 0: (B, T, 2P)
        hidden_states += [torch.cat([f, b], dim=-1) for f, b in zip(fwd_outputs, bwd_outputs)]
        if attention_mask is not None and backward_attention_mask is attention_mask:
            keep = attention_mask[..., None].to(hidden_states[0].dtype)  # (B, T, 1)
            hidden_states = [h * keep for h in hidden_states]
        hidden_states = tuple(hidden_states)
        stacked = torch.stack(hidden_states, dim=1)  # (B, L + 1, T, 2P)
        output = ElmoModelOutput(
            last_hidden_state=hidden_states[-1],
            hidden_states=hidden_states,
            stacked_hidden_states=stacked,
            final_states=final_states if return_final_states else None,
        )
        return output, (fwd_outputs[-1], bwd_outputs[-1])


def adaptive_softmax_plan(targets: torch.Tensor, cutoffs: list[int]) -> tuple[torch.Tensor, list[int]]:
    """Host-side row selection for the adaptive softmax, so that the device never has to say which rows hold which
    words (a data collator calls this on the CPU targets; see `ElmoForLanguageModeling.forward`).

    Args:
        targets: (B, T) word ids, -100 = no target.
        cutoffs: the adaptive softmax cluster bounds (`config.adaptive_cutoffs`, without the vocabulary size).

    Returns:
        (order, sizes): `order` (N,) the flat positions (b * T + t) of every target, grouped by cluster (shortlist
        first, then each tail cluster, positions ascending within a group); `sizes` the number of targets per group.
    """
    flat = targets.reshape(-1)
    cluster = torch.bucketize(flat, torch.tensor(list(cutoffs), dtype=flat.dtype), right=True)  # 0 = shortlist
    cluster = cluster.masked_fill(flat == -100, len(cutoffs) + 1)  # sorts after every real cluster
    order = torch.sort(cluster, stable=True).indices
    sizes = torch.bincount(cluster, minlength=len(cutoffs) + 2)[: len(cutoffs) + 1].tolist()
    return order[: sum(sizes)], sizes


class ElmoForLanguageModeling(ElmoPreTrainedModel):
    """ELMo biLM pretraining: forward next-word and backward previous-word prediction with a shared softmax."""

    def __init__(self, config: ElmoConfig):
        super().__init__(config)
        self.elmo = ElmoModel(config)
        self.dropout = nn.Dropout(config.dropout)
        if config.softmax_type == "full":
            self.softmax = nn.Linear(config.projection_dim, config.vocab_size)
            self.adaptive_softmax = None
        else:
            cutoffs = config.adaptive_cutoffs or [config.vocab_size // 10, config.vocab_size // 3]
            self.softmax = None
            self.adaptive_softmax = nn.AdaptiveLogSoftmaxWithLoss(
                config.projection_dim, config.vocab_size, cutoffs=list(cutoffs), div_value=config.adaptive_div_value
            )
        self.post_init()

    def get_output_embeddings(self):
        return self.softmax

    @staticmethod
    def shift_labels(labels: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """(B, T) words -> forward targets (word t+1 at t) and backward targets (word t-1 at t); -100 = ignore."""
        if attention_mask is not None:
            labels = labels.masked_fill(attention_mask == 0, -100)
        ignore = labels.new_full((labels.size(0), 1), -100)
        forward_labels = torch.cat([labels[:, 1:], ignore], dim=1)
        backward_labels = torch.cat([ignore, labels[:, :-1]], dim=1)
        return forward_labels, backward_labels

    def _direction_loss(self, hidden: torch.Tensor, logits: torch.Tensor | None, targets: torch.Tensor, plan=None):
        """Mean NLL over targets != -100 and their count."""
        valid = targets != -100
        count = valid.sum()
        if logits is not None:
            nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="sum")
        elif self.softmax is not None:
            # Every position, ignored ones included: boolean selection would make the host wait for the device.
            logits = self.softmax(hidden).float()
            nll = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
        elif plan is not None:
            nll = self._adaptive_nll(hidden, targets, *plan)
        else:
            selected = hidden[valid]  # (N, P): only positions with a target (the adaptive softmax selects anyway)
            if selected.numel() == 0:
                nll = hidden.sum() * 0.0
            else:
                # In the weights' dtype: fp32 (autocast or not), bf16 where FSDP / DeepSpeed hold bf16 weights.
                dtype = self.adaptive_softmax.head.weight.dtype
                nll = -self.adaptive_softmax(selected.to(dtype), targets[valid]).output.float().sum()
        return nll / count.clamp(min=1), count

    def _adaptive_nll(self, hidden: torch.Tensor, targets: torch.Tensor, order: torch.Tensor, sizes: list[int]):
        """Summed NLL of the adaptive softmax (the value `nn.AdaptiveLogSoftmaxWithLoss` gives) with each cluster's
        rows from `adaptive_softmax_plan`: the sizes are host integers, so nothing here waits for the device."""
        asm = self.adaptive_softmax
        dtype = asm.head.weight.dtype  # as above: bf16 weights under FSDP / DeepSpeed
        rows = hidden.reshape(-1, hidden.size(-1)).index_select(0, order).to(dtype)  # (N, P), grouped by cluster
        words = targets.reshape(-1).index_select(0, order)
        row_groups, word_groups = rows.split(sizes), words.split(sizes)
        # head: the word itself in the shortlist, the cluster's own entry for a word of a tail cluster
        head_targets = [word_groups[0]] + [
            torch.full((n,), asm.shortlist_size + i, dtype=words.dtype, device=words.device)
            for i, n in enumerate(sizes[1:])
        ]
        head = F.log_softmax(asm.head(rows).float(), dim=-1)
        nll = -head.gather(1, torch.cat(head_targets)[:, None]).sum()
        for i, n in enumerate(sizes[1:]):
            if n:
                tail = F.log_softmax(asm.tail[i](row_groups[i + 1]).float(), dim=-1)
                nll = nll - tail.gather(1, (word_groups[i + 1] - asm.cutoffs[i])[:, None]).sum()
        return nll

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        char_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        forward_labels: torch.LongTensor | None = None,
        backward_labels: torch.LongTensor | None = None,
        initial_states: ElmoStates | None = None,
        return_final_states: bool = False,
        backward_input_ids: torch.LongTensor | None = None,
        backward_char_ids: torch.LongTensor | None = None,
        backward_attention_mask: torch.Tensor | None = None,
        return_logits: bool = True,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        forward_softmax_plan: tuple[torch.Tensor, list[int]] | None = None,
        backward_softmax_plan: tuple[torch.Tensor, list[int]] | None = None,
        char_plan: tuple[torch.Tensor, torch.Tensor] | None = None,
        backward_char_plan: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs,
    ) -> ElmoLanguageModelingOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            The words of the window (usually `input_ids`); shifted inside: the forward LM predicts `labels[t+1]` at t,
            the backward LM `labels[t-1]`. -100 and padding are ignored.
        forward_labels / backward_labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Already aligned targets, e.g. the words just after / before a window cut from a stream (override `labels`).
        return_logits (`bool`, *optional*, defaults to `True`):
            `False` skips the (B, T, V) logits: the softmax then runs only where there is a target (training).
        output_hidden_states (`bool`, *optional*): also return every biLM layer (see [`ElmoModelOutput`]).
        forward_softmax_plan / backward_softmax_plan (*optional*): `adaptive_softmax_plan(targets, cutoffs)` of the
            forward / backward targets, made on the host by the data collator. With them the adaptive softmax loss
            runs without a host-device synchronisation; without them it finds each cluster's rows on the device.
        char_plan / backward_char_plan (*optional*): see [`ElmoModel.forward`]. With all four plans (and windows
            without padding, as in pretraining) a training step never makes the host wait for the device.
        Other arguments: see [`ElmoModel.forward`].
        """
        return_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        outputs, (fwd_top, bwd_top) = self.elmo.encode(
            input_ids,
            char_ids,
            attention_mask,
            initial_states,
            return_final_states,
            backward_input_ids,
            backward_char_ids,
            backward_attention_mask,
            build_representations=bool(output_hidden_states),
            char_plan=char_plan,
            backward_char_plan=backward_char_plan,
        )  # top LSTM outputs: (B, T, P) each
        fwd_top, bwd_top = self.dropout(fwd_top), self.dropout(bwd_top)

        forward_logits = backward_logits = None
        if self.softmax is not None and return_logits:
            forward_logits, backward_logits = self.softmax(fwd_top), self.softmax(bwd_top)  # (B, T, V)

        if labels is not None and (forward_labels is None or backward_labels is None):
            if backward_input_ids is not None or backward_char_ids is not None:
                raise ValueError("With separate backward inputs pass forward_labels and backward_labels.")
            shifted_fwd, shifted_bwd = self.shift_labels(labels, attention_mask)
            forward_labels = shifted_fwd if forward_labels is None else forward_labels
            backward_labels = shifted_bwd if backward_labels is None else backward_labels

        loss = forward_loss = backward_loss = num_fwd = num_bwd = None
        if forward_labels is not None and backward_labels is not None:
            forward_loss, num_fwd = self._direction_loss(fwd_top, forward_logits, forward_labels, forward_softmax_plan)
            backward_loss, num_bwd = self._direction_loss(
                bwd_top, backward_logits, backward_labels, backward_softmax_plan
            )
            loss = 0.5 * (forward_loss + backward_loss)

        output = ElmoLanguageModelingOutput(
            loss=loss,
            forward_loss=forward_loss,
            backward_loss=backward_loss,
            forward_logits=forward_logits,
            backward_logits=backward_logits,
            num_forward_targets=num_fwd,
            num_backward_targets=num_bwd,
            hidden_states=outputs.hidden_states,
            final_states=outputs.final_states,
        )
        return output if return_dict else output.to_tuple()


# --------------------------------------------------------------------------------------------------------------------
# downstream: scalar mix + task encoder
# --------------------------------------------------------------------------------------------------------------------


class ElmoScalarMix(nn.Module):
    """`gamma * sum_j softmax(s)_j * h_j` over the biLM layers (Peters et al., 2018, Eq. 1)."""

    def __init__(self, num_layers: int, layer_norm: bool = False):
        super().__init__()
        self.scalar_parameters = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(1))
        self.layer_norm = layer_norm

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.scalar_parameters, dim=0)  # (L + 1,), sums to 1

    def forward(self, stacked: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """stacked: (B, L + 1, T, D) -> (B, T, D)."""
        if self.layer_norm:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
            if attention_mask is not None:
                stacked = stacked * attention_mask[:, None, :, None].to(stacked.dtype)
        weights = self.weights().to(stacked.dtype)
        return self.gamma * torch.einsum("l,bltd->btd", weights, stacked)


class ElmoAttentionPooling(nn.Module):
    """Additive attention pooling (Yang et al., 2016): `u_t = tanh(W h_t + b)`, `a = softmax_t(u_t . u_w)`,
    `s = sum_t a_t h_t`."""

    def __init__(self, input_dim: int, attention_dim: int):
        super().__init__()
        self.projection = nn.Linear(input_dim, attention_dim)
        self.context = nn.Parameter(torch.zeros(attention_dim))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None):
        scores = torch.tanh(self.projection(hidden)) @ self.context  # (B, T)
        if attention_mask is not None:
            scores = scores.masked_fill(attention_mask == 0, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores.float(), dim=-1).to(hidden.dtype)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, hidden), weights  # (B, D), (B, T)


class ElmoTaskWordEmbedder(nn.Module):
    """Context-independent word vectors over the task vocabulary (`task_word_ids`, 0 = padding); always trained.
    The module owns its weight (no inner `nn.Embedding`) so that `_init_weights` initialises it when a biLM
    checkpoint without a word channel is loaded."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(config.task_word_vocab_size, config.task_word_embedding_dim))

    def forward(self, task_word_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(task_word_ids, self.weight, padding_idx=0)  # (B, T, E)


class ElmoForSequenceClassification(ElmoPreTrainedModel):
    """ELMo features (scalar mix of all biLM layers) [; task word embedding] -> BiLSTM -> attention pooling ->
    linear classifier. The biLM is frozen when `config.freeze_bilm` (default) and then always runs in eval mode
    without gradients; the word channel (`config.task_word_vocab_size > 0`) is trained in either case."""

    def __init__(self, config: ElmoConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.elmo = ElmoModel(config)
        self.scalar_mix = ElmoScalarMix(config.num_layers + 1, config.scalar_mix_layer_norm)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.task_words = ElmoTaskWordEmbedder(config) if config.task_word_vocab_size else None
        input_size = config.hidden_size + (config.task_word_embedding_dim if self.task_words is not None else 0)
        self.task_encoder = nn.LSTM(input_size, config.task_hidden_size, batch_first=True, bidirectional=True)
        self.pooler = ElmoAttentionPooling(2 * config.task_hidden_size, config.task_attention_dim)
        self.classifier = nn.Linear(2 * config.task_hidden_size, config.num_labels)
        self.post_init()
        self.set_bilm_frozen(config.freeze_bilm)

    @torch.no_grad()
    def init_task_words_from_bilm(self, tokenizer, batch_size: int = 512) -> None:
        """Start the word channel from the biLM's own context-free vector of each task word (layer 0: the character
        CNN's output, or the input embedding), as Peters et al. (2018) start theirs from pretrained GloVe; the vectors
        stay trainable. Needs `task_word_embedding_dim == projection_dim`; ids 0-3 (`<pad> <unk> <s> </s>`) keep
        their initialisation."""
        if self.task_words is None or not getattr(tokenizer, "task_words", None):
            raise ValueError("This classifier has no word channel (task_word_vocab_size is 0).")
        width = self.task_words.weight.size(1)
        if width != self.config.projection_dim:
            raise ValueError(
                f"task_word_embedding_dim {width} must equal the biLM's projection_dim {self.config.projection_dim} "
                "to start the word channel from the biLM's token vectors"
            )
        words = tokenizer.task_words[4:]
        device = self.task_words.weight.device
        was_training = self.elmo.training
        self.elmo.eval()
        rows = []
        for start in range(0, len(words), batch_size):
            chunk = words[start : start + batch_size]
            if self.config.token_embedder == "char_cnn":
                char_ids = torch.tensor([tokenizer.words_to_char_ids(chunk)], device=device)
                vectors = self.elmo.embed_tokens(char_ids=char_ids)
            else:
                ids = torch.tensor([tokenizer.convert_tokens_to_ids(chunk)], device=device)
                vectors = self.elmo.embed_tokens(input_ids=ids)
            rows.append(vectors[0].float())
        self.elmo.train(was_training)
        if rows:
            # the biLM's directions at the channel's own initial scale: the raw layer-0 vectors are ~40x larger than
            # the other inputs' and saturate the task BiLSTM (RESULTS.md, "The preset on a faster host")
            vectors = torch.cat(rows)
            scale = self.task_words.weight[4:].float().std() / vectors.std().clamp(min=1e-12)
            self.task_words.weight[4:] = (vectors * scale).to(self.task_words.weight.dtype)

    def set_bilm_frozen(self, frozen: bool = True):
        self.config.freeze_bilm = frozen
        self.elmo.requires_grad_(not frozen)
        if frozen:
            self.elmo.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_bilm:
            self.elmo.eval()
        return self

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        char_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        task_word_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        """`task_word_ids` (B, T): the tokens' ids in the task vocabulary, needed when the model has a word channel
        (its tokenizer returns them)."""
        return_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_bilm):
            elmo_out = self.elmo(input_ids=input_ids, char_ids=char_ids, attention_mask=attention_mask)
        mixed = self.scalar_mix(elmo_out.stacked_hidden_states, attention_mask)  # (B, T, 2P)
        if self.task_words is not None:
            if task_word_ids is None:
                raise ValueError(
                    "This classifier concatenates task word embeddings with ELMo: pass `task_word_ids` (its tokenizer "
                    "returns them)."
                )
            mixed = torch.cat([mixed, self.task_words(task_word_ids).to(mixed.dtype)], dim=-1)  # (B, T, 2P + E)
        mixed = self.dropout(mixed)

        if attention_mask is not None:
            lengths = attention_mask.long().sum(-1).cpu().clamp(min=1)
            packed = pack_padded_sequence(mixed, lengths, batch_first=True, enforce_sorted=False)
            encoded, _ = self.task_encoder(packed)
            encoded, _ = pad_packed_sequence(encoded, batch_first=True, total_length=mixed.size(1))  # (B, T, 2H)
        else:
            encoded, _ = self.task_encoder(mixed)  # (B, T, 2H)
        pooled, attention = self.pooler(encoded, attention_mask)  # (B, 2H)
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
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float().view(-1))
            elif self.config.problem_type == "single_label_classification":
                loss = F.cross_entropy(logits.float().view(-1, self.num_labels), labels.view(-1))
            else:
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())

        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=elmo_out.hidden_states, attentions=(attention,)
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "adaptive_softmax_plan",
    "character_cnn_plan",
    "ElmoPreTrainedModel",
    "ElmoModel",
    "ElmoForLanguageModeling",
    "ElmoForSequenceClassification",
    "ElmoScalarMix",
    "ElmoTaskWordEmbedder",
    "ElmoModelOutput",
    "ElmoLanguageModelingOutput",
]
