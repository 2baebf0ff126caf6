"""Warm-start the Transformer encoder from a BERT checkpoint (Liu & Lapata, 2019, "Text Summarization with
Pretrained Encoders"): the encoder becomes a copy of BERT, the decoder starts from scratch.

    from toolkit.models.transformer.warm_start import bert_encoder_config_kwargs, warm_start_encoder_from_bert
    bert = transformers.BertModel.from_pretrained("bert_dir")
    config = TransformerSeq2SeqConfig(vocab_size=8000, decoder_layers=6, **bert_encoder_config_kwargs(bert.config))
    model = TransformerSeq2SeqForConditionalGeneration(config)
    warm_start_encoder_from_bert(model, bert.state_dict())

Accepted checkpoints: Hugging Face `BertModel` names (`embeddings.word_embeddings.weight`,
`encoder.layer.0.attention.self.query.weight`, ...), the same with the `bert.` prefix of `BertForMaskedLM` /
`BertForPreTraining`, and the toolkit's own `toolkit_bert` family (fused QKV split into Q, K, V; pre-LN and
bias-free variants supported, gated FFNs not); pooler and pre-training heads are ignored.
`load_bert_encoder(folder)` reads either kind from a checkpoint folder.

Not imported by the modeling file: shipped checkpoints do not need it.
"""

import json
import os

import torch
from torch import nn

# HF BERT (after `bert.` / `encoder.` stripping) -> our encoder, relative to `model.encoder`; {i} = layer index.
_EMBEDDING_NAMES = {
    "embeddings.word_embeddings": "embeddings.tokens",
    "embeddings.position_embeddings": "embeddings.positions",
    "embeddings.token_type_embeddings": "embeddings.token_types",
    "embeddings.LayerNorm": "embeddings.layer_norm",
}
_LAYER_NAMES = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "self_attn_layer_norm",
    "intermediate.dense": "ffn.fc1",
    "output.dense": "ffn.fc2",
    "output.LayerNorm": "final_layer_norm",
}
_IGNORED_PREFIXES = ("pooler.", "cls.", "embeddings.position_ids")


def _get(config, name, default=None):
    return config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)


def bert_encoder_config_kwargs(bert_config) -> dict:
    """`TransformerSeq2SeqConfig` keyword arguments that make the encoder a BERT of this configuration.

    `bert_config`: a `transformers.BertConfig`, the toolkit's `ToolkitBertConfig`, or either one's dict. The decoder
    keeps its own vocabulary (`vocab_size`) and the shared width `d_model` = BERT's hidden size.
    """
    activation = _get(bert_config, "hidden_act", "gelu")
    if activation in ("geglu", "swiglu"):
        raise ValueError(f"a BERT with gated feed-forward blocks ({activation}) cannot initialise this encoder")
    vocab_size = _get(bert_config, "vocab_size")
    multiple = _get(bert_config, "pad_vocab_to_multiple_of", 1) or 1  # toolkit_bert pads its embedding rows
    return {
        "d_model": _get(bert_config, "hidden_size"),
        "encoder_layers": _get(bert_config, "num_hidden_layers"),
        "encoder_attention_heads": _get(bert_config, "num_attention_heads"),
        "encoder_ffn_dim": _get(bert_config, "intermediate_size"),
        "encoder_vocab_size": (vocab_size + multiple - 1) // multiple * multiple,
        "encoder_pad_token_id": _get(bert_config, "pad_token_id", 0) or 0,
        "encoder_type_vocab_size": _get(bert_config, "type_vocab_size", 2),
        "encoder_position_embedding_type": "learned",
        "max_position_embeddings": _get(bert_config, "max_position_embeddings", 512),
        "encoder_layernorm_embedding": True,
        "encoder_activation_function": activation,
        "encoder_normalize_before": bool(_get(bert_config, "pre_norm", False)),
        "encoder_scale_embedding": False,
        "encoder_layer_norm_eps": _get(bert_config, "layer_norm_eps", 1e-12),
        "share_embeddings": False,
    }


def _strip_prefix(key: str) -> str:
    return key[len("bert.") :] if key.startswith("bert.") else key


def hf_bert_to_encoder_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face BERT names -> our encoder's names (pooler and pre-training heads dropped)."""
    out = {}
    for key, tensor in state_dict.items():
        key = _strip_prefix(key)
        if key.startswith(_IGNORED_PREFIXES):
            continue
        name = None
        for source, target in _EMBEDDING_NAMES.items():
            if key.startswith(source + "."):
                name = target + key[len(source) :]
        if key.startswith("encoder.layer."):
            index, rest = key[len("encoder.layer.") :].split(".", 1)
            for source, target in _LAYER_NAMES.items():
                if rest.startswith(source + "."):
                    name = f"layers.{index}.{target}{rest[len(source) :]}"
        if name is None:
            raise KeyError(f"unexpected BERT parameter {key!r}")
        out[name] = tensor
    return out


# toolkit_bert (toolkit/models/bert) names -> ours; the fused QKV projection is split into three.
_TOOLKIT_EMBEDDING_NAMES = {
    "embeddings.word_embeddings": "embeddings.tokens",
    "embeddings.position_embeddings": "embeddings.positions",
    "embeddings.token_type_embeddings": "embeddings.token_types",
    "embeddings.norm": "embeddings.layer_norm",
    "encoder.final_norm": "layer_norm",
}
_TOOLKIT_LAYER_NAMES = {
    "attention.out": "self_attn.out_proj",
    "attention_norm": "self_attn_layer_norm",
    "mlp.fc_in": "ffn.fc1",
    "mlp.fc_out": "ffn.fc2",
    "mlp_norm": "final_layer_norm",
}


def toolkit_bert_to_encoder_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """toolkit_bert names -> our encoder's names. Bias-free toolkit BERTs (`use_bias=False`) get zero biases."""
    out = {}
    for key, tensor in state_dict.items():
        key = _strip_prefix(key)
        if key.startswith(("pooler.", "mlm_head.", "cls.", "seq_relationship.", "classifier.", "head.")):
            continue
        name = None
        for source, target in _TOOLKIT_EMBEDDING_NAMES.items():
            if key.startswith(source + "."):
                name = target + key[len(source) :]
        if key.startswith("encoder.layers."):
            index, rest = key[len("encoder.layers.") :].split(".", 1)
            if rest.startswith("attention.qkv."):
                suffix = rest[len("attention.qkv.") :]
                for part, proj in zip(tensor.chunk(3, dim=0), ("q_proj", "k_proj", "v_proj")):
                    out[f"layers.{index}.self_attn.{proj}.{suffix}"] = part
                continue
            for source, target in _TOOLKIT_LAYER_NAMES.items():
                if rest.startswith(source + "."):
                    name = f"layers.{index}.{target}{rest[len(source) :]}"
        if name is None:
            continue  # heads of other tasks
        out[name] = tensor
    return out


def load_bert_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read `model.safetensors` or `pytorch_model.bin` from a checkpoint folder."""
    safetensors_file = os.path.join(path, "model.safetensors")
    if os.path.exists(safetensors_file):
        from safetensors.torch import load_file

        return load_file(safetensors_file)
    return torch.load(os.path.join(path, "pytorch_model.bin"), map_location="cpu", weights_only=True)


def load_bert_encoder(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(encoder state dict in our names, config kwargs) from a `bert` or `toolkit_bert` checkpoint folder."""
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    state_dict = load_bert_state_dict(path)
    if config.get("model_type") == "bert":
        return hf_bert_to_encoder_state(state_dict), bert_encoder_config_kwargs(config)
    if config.get("model_type") == "toolkit_bert":
        return toolkit_bert_to_encoder_state(state_dict), bert_encoder_config_kwargs(config)
    raise ValueError(f"{path}: model_type {config.get('model_type')!r} is neither 'bert' nor 'toolkit_bert'")


@torch.no_grad()
def warm_start_encoder(model: nn.Module, encoder_state: dict[str, torch.Tensor]) -> list[str]:
    """Copy a state dict in our encoder's names into `model`'s encoder (a `TransformerSeq2Seq...` model or its
    encoder). Every weight must be covered and every shape must match; biases a bias-free BERT lacks are zeroed.
    Returns the names copied."""
    encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
    targets = dict(encoder.named_parameters())
    copied = []
    for name, tensor in encoder_state.items():
        if name not in targets:
            raise KeyError(f"{name}: the encoder has no such parameter (is the config BERT-compatible?)")
        if targets[name].shape != tensor.shape:
            raise ValueError(f"{name}: shape {tuple(tensor.shape)} != {tuple(targets[name].shape)}")
        targets[name].copy_(tensor.to(targets[name].dtype))
        copied.append(name)
    missing = sorted(set(targets) - set(copied))
    if any(not name.endswith(".bias") or "layer_norm" in name for name in missing):
        raise ValueError(f"the BERT weights left encoder parameters uninitialised: {missing}")
    for name in missing:  # linear biases of a bias-free BERT
        targets[name].zero_()
    return copied


def warm_start_encoder_from_bert(model: nn.Module, bert_state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Copy a Hugging Face BERT state dict (`BertModel` names, optionally `bert.`-prefixed) into the encoder."""
    return warm_start_encoder(model, hf_bert_to_encoder_state(bert_state_dict))
