"""Draw the cross-attention (soft alignment) between source and target tokens of a saved encoder-decoder model.

    toolkit visualize-attention --model runs/multi30k --source "Ein Hund läuft im Schnee." --out map.png
    toolkit visualize-attention --model runs/multi30k --source "..." --target "A dog runs in the snow." --layer 2 --head 0

Works for both seq2seq families of the toolkit (and any Hugging Face encoder-decoder returning `cross_attentions`):
rows are target tokens (the token predicted at each step), columns are source tokens, each row sums to 1 (Bahdanau
et al., 2015, figure 3). For the Transformer pick a decoder `layer` and a `head`, or leave `head` unset for the
average over heads; the RNN model has one alignment per step (layer 0, head 0; none with `attention_type: "none"`,
which is a one-line error). Without `--target` the model's
greedy translation is drawn.

The source tokenizer is `<model>/source_tokenizer/` when that folder exists (e.g. a BERT-initialised encoder),
otherwise the tokenizer saved in `<model>`.
"""

import json
import os
from collections.abc import Sequence

import torch


def _byte_decoder() -> dict[str, int]:
    """Inverse of the byte -> printable character table that byte-level BPE vocabularies are written in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_DECODER = _byte_decoder()


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return type(getattr(backend, "decoder", None)).__name__ == "ByteLevel"


def _display(token: str, byte_level: bool = False) -> str:
    """A token as a label: byte-level symbols decoded to text ("MÃ¤nner" -> "Männer"), a leading space as "▁"."""
    if byte_level and all(ch in _BYTE_DECODER for ch in token):
        token = bytes(_BYTE_DECODER[ch] for ch in token).decode("utf-8", errors="replace")
        return token.replace(" ", "▁").replace("\n", "\\n")
    return token.replace("Ġ", "▁").replace("Ċ", "\\n")


def load_for_visualization(model_dir: str, trust_remote_code: bool = False):
    """(model, source_tokenizer, target_tokenizer) from a saved run folder; the model in eval mode.

    The toolkit's own classes are used unless `trust_remote_code=True` asks for the code saved in the folder. A
    folder that is not an encoder-decoder is a `UserError` naming what it holds.
    """
    import json

    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from toolkit.errors import UserError

    config_file = os.path.join(model_dir, "config.json")
    if not os.path.isfile(config_file):
        raise UserError(f"--model {model_dir} is not a saved model folder (no config.json)")
    with open(config_file, encoding="utf-8") as f:
        config = json.load(f)
    if not config.get("is_encoder_decoder"):
        kind = ", ".join(config.get("architectures") or []) or config.get("model_type", "unknown")
        raise UserError(
            f"--model {model_dir} holds a {config.get('model_type')} model ({kind}), not an encoder-decoder: "
            "visualize-attention draws the cross-attention of a seq2seq model (toolkit_transformer, toolkit_rnn_seq2seq)"
        )
    if not trust_remote_code:
        import toolkit  # noqa: F401  (registers the toolkit's model classes with the Auto classes)
    kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, **kwargs).eval()
    target_tokenizer = AutoTokenizer.from_pretrained(model_dir, **kwargs)
    source_dir = os.path.join(model_dir, "source_tokenizer")
    source_tokenizer = (
        AutoTokenizer.from_pretrained(source_dir, **kwargs) if os.path.isdir(source_dir) else target_tokenizer
    )
    return model, source_tokenizer, target_tokenizer


@torch.no_grad()
def cross_attention_matrix(
    model,
    source_tokenizer,
    target_tokenizer,
    source: str,
    target: str | None = None,
    layer: int = -1,
    head: int | None = None,
    max_new_tokens: int = 64,
) -> tuple[torch.Tensor, list[str], list[str]]:
    """Alignment weights (T, S) with the source and target token strings they are indexed by."""
    device = next(model.parameters()).device
    encoded = source_tokenizer(source, return_tensors="pt").to(device)
    start = model.config.decoder_start_token_id
    if target is None:
        generated = model.generate(**encoded, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False)
        tokens = generated[0].tolist()
        tokens = tokens[1:] if tokens and tokens[0] == start else tokens
        pad = model.config.pad_token_id
        while tokens and tokens[-1] == pad:
            tokens.pop()
    else:
        tokens = target_tokenizer(text_target=target)["input_ids"]
    labels = torch.tensor([tokens], device=device)
    outputs = model(**encoded, labels=labels, output_attentions=True, use_cache=False)
    if not outputs.cross_attentions:
        from toolkit.errors import UserError

        raise UserError(f"{type(model).__name__} returned no cross_attentions: there is no alignment to draw")
    weights = outputs.cross_attentions[layer][0]  # (H, T, S)
    if head is None:
        weights = weights.mean(0)
    else:
        weights = weights[head]
    source_ids = encoded["input_ids"][0].tolist()
    src_bytes, tgt_bytes = _is_byte_level(source_tokenizer), _is_byte_level(target_tokenizer)
    source_tokens = [_display(t, src_bytes) for t in source_tokenizer.convert_ids_to_tokens(source_ids)]
    target_tokens = [_display(t, tgt_bytes) for t in target_tokenizer.convert_ids_to_tokens(tokens)]
    return weights.float().cpu(), source_tokens, target_tokens


def plot_attention(
    weights: torch.Tensor, source_tokens: Sequence[str], target_tokens: Sequence[str], out: str, title: str = ""
) -> str:
    """Heat map of a (T, S) weight matrix with token labels on both axes, written as an image (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = weights.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * cols + 2.0), max(3.0, 0.35 * rows + 1.5)))
    image = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=float(weights.max()), aspect="auto")
    ax.set_xticks(range(cols), labels=list(source_tokens), rotation=90, fontsize=8)
    ax.set_yticks(range(rows), labels=list(target_tokens), fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def visualize_attention(
    model_dir: str,
    source: str,
    target: str | None = None,
    out: str = "map.png",
    layer: int = -1,
    head: int | None = None,
    trust_remote_code: bool = False,
) -> str:
    """Draw the cross-attention of the model saved in `model_dir` for one sentence pair; returns the image path."""
    config_file = os.path.join(model_dir, "config.json")
    if os.path.isfile(config_file) and json.load(open(config_file, encoding="utf-8")).get("attention_type") == "none":
        from toolkit.errors import UserError

        raise UserError(
            f"{model_dir} has no attention to draw: it was trained with attention_type 'none' (the decoder sees "
            "only the final encoder state); train with dot, bilinear or additive attention for alignment maps"
        )
    model, source_tokenizer, target_tokenizer = load_for_visualization(model_dir, trust_remote_code)
    weights, source_tokens, target_tokens = cross_attention_matrix(
        model, source_tokenizer, target_tokenizer, source, target, layer=layer, head=head
    )
    if getattr(model.config, "attention_type", None):  # the RNN decoder: one attention, no layers or heads
        which = f"{model.config.attention_type} attention"
    else:
        which = f"layer {layer}, " + ("mean over heads" if head is None else f"head {head}")
    return plot_attention(weights, source_tokens, target_tokens, out, title=f"cross-attention ({which})")


def add_cli(subparsers) -> None:
    """Add the `visualize-attention` subcommand to the `toolkit` command line."""
    parser = subparsers.add_parser(
        "visualize-attention",
        help="Draw the source-target cross-attention of a saved seq2seq model as a PNG.",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--model", required=True, help="Saved model folder (weights, config, tokenizer).")
    parser.add_argument("--source", required=True, help="Source sentence.")
    parser.add_argument("--target", default=None, help="Target sentence; default: the model's greedy output.")
    parser.add_argument("--out", default="map.png", help="Image file to write.")
    parser.add_argument("--layer", type=int, default=-1, help="Decoder layer (Transformer; default: last).")
    parser.add_argument("--head", type=int, default=None, help="Attention head (default: mean over heads).")
    parser.add_argument(
        "--trust_remote_code", action="store_true", help="Run the model code saved in the folder (not the toolkit's)."
    )
    parser.set_defaults(
        func=lambda a: print(
            visualize_attention(
                a.model, a.source, a.target, a.out, layer=a.layer, head=a.head, trust_remote_code=a.trust_remote_code
            )
        )
    )
