"""BiLSTM-attention sentence classifier: the no-pretraining ("scratch") baseline of the toolkit.

Features and where they come from:
- Word embeddings over a word vocabulary built from the training set, bidirectional LSTM encoder
  (Hochreiter & Schmidhuber, 1997, "Long Short-Term Memory"; Schuster & Paliwal, 1997, "Bidirectional Recurrent
  Neural Networks"). Padded batches are packed (`pack_padded_sequence`), so the backward direction starts at each
  sentence's last real word and the outputs do not depend on the amount of padding.
- Additive attention pooling a_t = softmax_t(v^T tanh(W h_t)) over non-pad positions, sentence vector
  sum_t a_t h_t (Bahdanau et al., 2015, "Neural Machine Translation by Jointly Learning to Align and Translate";
  used for sentence classification by Yang et al., 2016, "Hierarchical Attention Networks for Document
  Classification" and Lin et al., 2017, "A Structured Self-attentive Sentence Embedding"). Max / mean pooling as
  alternatives (Conneau et al., 2017, "Supervised Learning of Universal Sentence Representations", InferSent).
- Dropout on embeddings and on the sentence vector (Srivastava et al., 2014), a linear classifier, and the
  Hugging Face sequence-classification losses chosen by `problem_type` (regression / single-label /
  multi-label).
- Sentence pairs are encoded as one sequence "a [SEP] b" by the tokenizer; the model sees only token ids.

This file imports only torch, transformers and its sibling configuration file, so `save_pretrained` ships it and
`from_pretrained(..., trust_remote_code=True)` works without the toolkit installed.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput

from .configuration_bilstm import BiLSTMConfig

try:  # transformers v5: init functions that skip weights already loaded from a checkpoint
    from transformers import initialization as init
except ImportError:  # pragma: no cover - older transformers
    from torch.nn import init


@dataclass
class BiLSTMModelOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, 2 * hidden_size)`):
        Concatenated forward and backward LSTM states of the last layer (zeros at pad positions).
    pooler_output (`torch.FloatTensor` of shape `(batch_size, 2 * hidden_size)`):
        The pooled sentence vector.
    pooling_weights (`torch.FloatTensor` of shape `(batch_size, sequence_length)`, *optional*):
        The attention pooling distribution over positions (only with `pooling="attention"`).
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    pooling_weights: torch.FloatTensor | None = None


class BiLSTMAttentionPooling(nn.Module):
    """Additive attention pooling: score_t = v^T tanh(W h_t), softmax over non-pad positions."""

    def __init__(self, input_size: int, attention_size: int):
        super().__init__()
        self.proj = nn.Linear(input_size, attention_size)  # W (with bias)
        self.v = nn.Linear(attention_size, 1, bias=False)  # v

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # hidden_states: (B, T, D); mask: (B, T) with 1 at real tokens
        scores = self.v(torch.tanh(self.proj(hidden_states))).squeeze(-1)  # (B, T)
        scores = scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores.float(), dim=-1).to(hidden_states.dtype)  # (B, T)
        pooled = torch.bmm(weights.unsqueeze(1), hidden_states).squeeze(1)  # (B, 1, T) @ (B, T, D) -> (B, D)
        return pooled, weights


class BiLSTMPreTrainedModel(PreTrainedModel):
    config_class = BiLSTMConfig
    base_model_prefix = "bilstm"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
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
        elif isinstance(module, nn.LSTM):
            for name, param in module.named_parameters():
                if "weight_ih" in name:
                    init.xavier_uniform_(param)
                elif "weight_hh" in name:
                    init.orthogonal_(param)
                elif "bias_ih" in name:
                    # gate order i, f, g, o: forget-gate bias 1 so that memory is kept early in training
                    # (Jozefowicz et al., 2015, "An Empirical Exploration of Recurrent Network Architectures").
                    hidden = param.shape[0] // 4
                    init.constant_(param, 0.0)
                    if not getattr(param, "_is_hf_initialized", False):
                        with torch.no_grad():
                            param[hidden : 2 * hidden].fill_(1.0)
                elif "bias_hh" in name:
                    init.constant_(param, 0.0)


class BiLSTMModel(BiLSTMPreTrainedModel):
    """Word embeddings -> bidirectional LSTM -> pooled sentence vector."""

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.lstm = nn.LSTM(
            input_size=config.embedding_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.lstm_dropout if config.num_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )
        if config.pooling == "attention":
            self.pooling = BiLSTMAttentionPooling(2 * config.hidden_size, config.attention_size)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, value):
        self.embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,  # accepted for tokenizer compatibility, unused
        return_dict: bool | None = None,
        **kwargs,
    ) -> BiLSTMModelOutput | tuple:
        return_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        if attention_mask is None:
            if self.config.pad_token_id is not None:
                attention_mask = (input_ids != self.config.pad_token_id).long()
            else:
                attention_mask = torch.ones_like(input_ids)
        batch_size, seq_len = input_ids.shape
        mask = attention_mask.to(torch.bool)  # (B, T)
        # Right padding is assumed: each row's real tokens are its first `lengths` positions.
        lengths = mask.sum(dim=1).clamp(min=1)  # (B,)

        embeddings = self.embedding_dropout(self.embeddings(input_ids))  # (B, T, E)
        packed = nn.utils.rnn.pack_padded_sequence(embeddings, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_output, _ = self.lstm(packed)
        hidden_states, _ = nn.utils.rnn.pad_packed_sequence(
            packed_output, batch_first=True, total_length=seq_len
        )  # (B, T, 2H), zeros after each row's length

        pooling_weights = None
        if self.config.pooling == "attention":
            pooled, pooling_weights = self.pooling(hidden_states, mask)  # (B, 2H), (B, T)
        elif self.config.pooling == "max":
            pooled = hidden_states.masked_fill(~mask.unsqueeze(-1), torch.finfo(hidden_states.dtype).min)
            pooled = pooled.max(dim=1).values  # (B, 2H)
        else:  # mean
            summed = (hidden_states * mask.unsqueeze(-1).to(hidden_states.dtype)).sum(dim=1)  # (B, 2H)
            pooled = summed / lengths.unsqueeze(-1).to(hidden_states.dtype)

        if not return_dict:
            return (hidden_states, pooled, pooling_weights)
        return BiLSTMModelOutput(
            last_hidden_state=hidden_states, pooler_output=pooled, pooling_weights=pooling_weights
        )


class BiLSTMForSequenceClassification(BiLSTMPreTrainedModel):
    """[`BiLSTMModel`] with dropout and a linear classifier on the pooled sentence vector."""

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bilstm = BiLSTMModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(2 * config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self):
        return self.bilstm.embeddings

    def set_input_embeddings(self, value):
        self.bilstm.embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, or `torch.FloatTensor` of shape
            `(batch_size, num_labels)` for multi-label problems, *optional*): targets for the loss. `num_labels == 1`
            gives a regression (MSE) loss, integer labels a cross-entropy loss, float label vectors a
            binary-cross-entropy loss.
        """
        return_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        outputs = self.bilstm(input_ids, attention_mask=attention_mask, return_dict=True)
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (B, num_labels)

        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            if self.config.problem_type is None:
                if self.num_labels == 1:
                    self.config.problem_type = "regression"
                elif labels.dtype in (torch.long, torch.int):
                    self.config.problem_type = "single_label_classification"
                else:
                    self.config.problem_type = "multi_label_classification"
            if self.config.problem_type == "regression":
                loss = nn.functional.mse_loss(logits.squeeze(-1).float(), labels.squeeze(-1).float())
            elif self.config.problem_type == "single_label_classification":
                loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1))
            else:
                loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())

        if not return_dict:
            output = (logits,)
            return ((loss,) + output) if loss is not None else output
        return SequenceClassifierOutput(loss=loss, logits=logits)


__all__ = [
    "BiLSTMForSequenceClassification",
    "BiLSTMModel",
    "BiLSTMModelOutput",
    "BiLSTMPreTrainedModel",
]
