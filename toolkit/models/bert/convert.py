"""Convert Hugging Face `BertModel` / `BertForMaskedLM` / `BertForPreTraining` checkpoints to `toolkit_bert`.

    toolkit convert-hf-bert path/to/hf_bert path/to/toolkit_bert

The source folder holds `config.json` and `model.safetensors` or `pytorch_model.bin` (sharded checkpoints with an
`*.index.json` also work). Query/key/value weights are concatenated into the fused QKV projection; the written config
is post-LN with the source activation, biases and tied decoder, i.e. numerically the same network. Tokenizer files
are copied next to the converted weights. The destination loads with
`AutoModel.from_pretrained(dst, trust_remote_code=True)` (or the matching head class).

Not part of the shipped model code (it imports the toolkit's modeling file directly).
"""

import json
import os
import re
import shutil

import torch

from toolkit.errors import UserError

from . import register
from .configuration_bert import ToolkitBertConfig
from .modeling_bert import ToolkitBertForMaskedLM, ToolkitBertForPreTraining, ToolkitBertModel

TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)

# HF name (after stripping the "bert." prefix) -> toolkit name (without prefix); {i} = layer index
_LAYER_RENAMES = {
    "attention.output.dense": "attention.out",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "mlp.fc_in",
    "output.dense": "mlp.fc_out",
    "output.LayerNorm": "mlp_norm",
}
_OTHER_RENAMES = {
    "embeddings.word_embeddings": "embeddings.word_embeddings",
    "embeddings.position_embeddings": "embeddings.position_embeddings",
    "embeddings.token_type_embeddings": "embeddings.token_type_embeddings",
    "embeddings.LayerNorm": "embeddings.norm",
    "pooler.dense": "pooler.dense",
    "cls.predictions.transform.dense": "cls.dense",
    "cls.predictions.transform.LayerNorm": "cls.norm",
    "cls.predictions.decoder": "cls.decoder",
    "cls.seq_relationship": "seq_relationship",
}


def config_from_hf(hf_config: dict, architecture: str = "BertModel", **overrides) -> ToolkitBertConfig:
    """Build the equivalent `ToolkitBertConfig` (post-LN, biases) from a HF `BertConfig` dict."""
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise UserError("only absolute position embeddings are supported")
    if hf_config.get("is_decoder") or hf_config.get("add_cross_attention"):
        raise UserError("decoder BERT checkpoints are not supported")
    act = hf_config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "relu"):
        raise UserError(f"unsupported hidden_act {act!r} (expected gelu, gelu_new or relu)")
    kwargs = dict(
        vocab_size=hf_config["vocab_size"],
        hidden_size=hf_config["hidden_size"],
        num_hidden_layers=hf_config["num_hidden_layers"],
        num_attention_heads=hf_config["num_attention_heads"],
        intermediate_size=hf_config["intermediate_size"],
        max_position_embeddings=hf_config.get("max_position_embeddings", 512),
        type_vocab_size=hf_config.get("type_vocab_size", 2),
        hidden_dropout_prob=hf_config.get("hidden_dropout_prob", 0.1),
        attention_probs_dropout_prob=hf_config.get("attention_probs_dropout_prob", 0.1),
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
        hidden_act=act,
        pre_norm=False,
        use_bias=True,
        pretraining_objectives=["mlm", "nsp"] if architecture == "BertForPreTraining" else ["mlm"],
        tie_word_embeddings=hf_config.get("tie_word_embeddings", True),
        classifier_dropout=hf_config.get("classifier_dropout"),
        initializer_range=hf_config.get("initializer_range", 0.02),
        pad_token_id=hf_config.get("pad_token_id", 0) or 0,
    )
    kwargs.update(overrides)
    return ToolkitBertConfig(**kwargs)


def _detect_architecture(state_dict: dict, hf_config: dict) -> str:
    keys = list(state_dict)
    if any(k.startswith("cls.seq_relationship") for k in keys):
        return "BertForPreTraining"
    if any(k.startswith("cls.predictions") for k in keys):
        return "BertForMaskedLM"
    return "BertModel"


def convert_state_dict(hf_state_dict: dict, architecture: str) -> dict:
    """Rename (and fuse) a HF BERT state dict into the toolkit layout for the matching toolkit class."""
    out, qkv = {}, {}
    for key, value in hf_state_dict.items():
        name = key[len("bert.") :] if key.startswith("bert.") else key
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)  # very old (TF-converted) checkpoints
        name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
        if name.endswith("position_ids") or name.endswith("token_type_ids"):  # buffers, recomputed on the fly
            continue
        if name in ("cls.predictions.bias", "cls.predictions.decoder.bias"):
            out["cls.bias"] = value
            continue
        m = re.match(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", name)
        if m:
            i, sub, kind = int(m.group(1)), m.group(2), m.group(3)
            if sub.startswith("attention.self."):
                qkv.setdefault((i, kind), {})[sub.split(".")[-1]] = value
                continue
            if sub not in _LAYER_RENAMES:
                raise KeyError(f"unexpected weight {key}")
            out[f"encoder.layers.{i}.{_LAYER_RENAMES[sub]}.{kind}"] = value
            continue
        m = re.match(r"(.+)\.(weight|bias)$", name)
        if not m or m.group(1) not in _OTHER_RENAMES:
            raise KeyError(f"unexpected weight {key}")
        out[f"{_OTHER_RENAMES[m.group(1)]}.{m.group(2)}"] = value
    for (i, kind), parts in qkv.items():
        out[f"encoder.layers.{i}.attention.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], 0)
    if architecture == "BertModel":
        return out
    # heads: encoder weights live under "bert."
    return {(k if k.startswith(("cls.", "seq_relationship.")) else f"bert.{k}"): v for k, v in out.items()}


def _toolkit_class(architecture: str):
    return {
        "BertModel": ToolkitBertModel,
        "BertForMaskedLM": ToolkitBertForMaskedLM,
        "BertForPreTraining": ToolkitBertForPreTraining,
    }[architecture]


def _build(hf_state_dict: dict, hf_config: dict, **overrides):
    architecture = _detect_architecture(hf_state_dict, hf_config)
    config = config_from_hf(hf_config, architecture, **overrides)
    state_dict = convert_state_dict(hf_state_dict, architecture)
    if config.padded_vocab_size != config.vocab_size:
        raise ValueError("convert with pad_vocab_to_multiple_of=1; pad later if needed")
    model = _toolkit_class(architecture)(config)
    if "cls.decoder.weight" not in state_dict and "cls.bias" in state_dict:  # tied: stored once
        state_dict["cls.decoder.weight"] = state_dict["bert.embeddings.word_embeddings.weight"]
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if unexpected or missing:
        raise RuntimeError(f"conversion mismatch: missing={missing} unexpected={unexpected}")
    if config.tie_word_embeddings and hasattr(model, "cls"):
        model.tie_weights()
    return model.eval()


def convert_hf_model(hf_model, **config_overrides):
    """Convert an in-memory HF `BertModel` / `BertForMaskedLM` / `BertForPreTraining` to the toolkit class with the
    same head. `config_overrides` (e.g. `attn_implementation="eager"`) go to `ToolkitBertConfig`."""
    return _build(hf_model.state_dict(), hf_model.config.to_dict(), **config_overrides)


def _load_hf_state_dict(src_dir: str) -> dict:
    def load_file(path):
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file as st_load

            return st_load(path)
        return torch.load(path, map_location="cpu", weights_only=True)

    for single in ("model.safetensors", "pytorch_model.bin"):
        if os.path.exists(os.path.join(src_dir, single)):
            return load_file(os.path.join(src_dir, single))
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        path = os.path.join(src_dir, index)
        if os.path.exists(path):
            with open(path) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            state_dict = {}
            for shard in shards:
                state_dict.update(load_file(os.path.join(src_dir, shard)))
            return state_dict
    raise UserError(f"no model.safetensors / pytorch_model.bin (or sharded index) in {src_dir}")


def _special_token_ids(src_dir: str) -> dict:
    """cls/sep/mask/pad ids from vocab.txt (WordPiece), if present."""
    path = os.path.join(src_dir, "vocab.txt")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    names = {"cls_token_id": "[CLS]", "sep_token_id": "[SEP]", "mask_token_id": "[MASK]", "pad_token_id": "[PAD]"}
    return {k: vocab[tok] for k, tok in names.items() if tok in vocab}


def convert_hf_bert(src_dir: str, dst_dir: str, **config_overrides) -> str:
    """Convert a HF BERT checkpoint folder to a toolkit checkpoint folder (weights, config with `auto_map`, code files,
    tokenizer files). Returns `dst_dir`."""
    register()
    config_path = os.path.join(src_dir, "config.json")
    if not os.path.isfile(config_path):
        raise UserError(f"{src_dir} is not a Hugging Face checkpoint folder (no config.json)")
    with open(config_path) as f:
        hf_config = json.load(f)
    if hf_config.get("model_type", "bert") != "bert":
        raise UserError(f"{config_path} has model_type {hf_config.get('model_type')!r}; expected 'bert'")
    overrides = {**_special_token_ids(src_dir), **config_overrides}
    model = _build(_load_hf_state_dict(src_dir), hf_config, **overrides)
    os.makedirs(dst_dir, exist_ok=True)
    model.save_pretrained(dst_dir)
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(src_dir, name)):
            shutil.copyfile(os.path.join(src_dir, name), os.path.join(dst_dir, name))
    return dst_dir


def add_cli(subparsers) -> None:
    """Register `convert-hf-bert SRC DST` on an `argparse` subparsers object; the command runs `args.func(args)`."""
    parser = subparsers.add_parser(
        "convert-hf-bert", help="convert a Hugging Face BERT checkpoint folder to the toolkit_bert format"
    )
    parser.add_argument("src", help="folder with config.json and model.safetensors / pytorch_model.bin")
    parser.add_argument("dst", help="output folder")
    parser.set_defaults(func=lambda args: print(f"converted model saved to {convert_hf_bert(args.src, args.dst)}"))


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m toolkit.models.bert.convert")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
