"""Checks a recipe runs before any heavy work (tokenizer training, data mapping, model building), so a bad input
costs one line and exit 2 at once, not a traceback minutes later."""

from __future__ import annotations

import dataclasses
import json
import os

from toolkit.errors import UserError


def check_writable(output_dir: str) -> None:
    """output_dir (or its nearest existing parent) must be a writable folder."""
    path = os.path.abspath(output_dir)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise UserError(f"output_dir {output_dir}: {path} is a file, not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"output_dir {output_dir}: {path} is not writable")


def model_config_dict(name_or_path: str, key: str = "model_name_or_path") -> dict:
    """The `config.json` of a model folder (or, for a Hub id, its downloaded config), as a dict; one line if there
    is none."""
    if os.path.isdir(name_or_path):
        config_file = os.path.join(name_or_path, "config.json")
        if not os.path.isfile(config_file):
            raise UserError(f"{key} {name_or_path} is a folder without config.json (not a saved model)")
        try:
            with open(config_file, encoding="utf-8") as f:
                return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{key} {name_or_path}: config.json is not valid JSON ({err})") from None
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name_or_path).to_dict()
    except Exception as err:  # OSError, ValueError, HTTP errors: all mean "no such model"
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise UserError(
            f"{key} {name_or_path} is neither a model folder nor a reachable Hub model ({first[:160]})"
        ) from None


def field_default(instance, name: str):
    """The dataclass default of `instance.name` (to tell a value the user chose from one nobody chose)."""
    return next(f.default for f in dataclasses.fields(instance) if f.name == name)


def check_positions(
    max_seq_length: int, max_positions: int | None, what: str, key: str = "max_seq_length", default=None
) -> int:
    """The sequence length to use. One the model's learned positions cannot cover is an error (not silent widening
    or an index error mid-run), unless it is the option's untouched `default`: then it is lowered to the positions,
    with one printed line."""
    if max_seq_length < 1:
        raise UserError(f"{key} must be >= 1, got {max_seq_length}")
    if max_positions and max_seq_length > max_positions:
        if default is not None and max_seq_length == default:
            print(
                f"{key}: the default {default} exceeds the {max_positions} positions of {what}; using {max_positions}"
            )
            return max_positions
        raise UserError(
            f"{key} {max_seq_length} exceeds the {max_positions} positions of {what} (max_position_embeddings): "
            f"pass --{key} {max_positions} or less"
        )
    return max_seq_length


def fit_length_to_model(
    group, model_name_or_path: str | None, scratch_positions: int | None = None, key="max_seq_length"
):
    """`group.<key>` checked against the learned positions of the checkpoint `model_name_or_path` (read from its
    config before anything is trained, so a bad model or length fails at once) or, for a model trained from scratch
    (None), against `scratch_positions`; see `check_positions`. Returns the length to use."""
    if model_name_or_path:
        positions = model_config_dict(model_name_or_path).get("max_position_embeddings")
        default = field_default(group, key)
        return check_positions(getattr(group, key), positions, model_name_or_path, key, default=default)
    return check_positions(getattr(group, key), scratch_positions, "the model", key)
