"""Recipe configuration: typed dataclass argument groups, `--config FILE.yaml` defaults, command-line overrides.

Precedence: dataclass defaults < YAML file < command-line flags. A YAML key that no argument group defines is an
error naming the key and the file (the pattern of TRL's `TrlParser.parse_args_and_config`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from typing import Any

import yaml
from transformers import HfArgumentParser

from toolkit.errors import UserError


def load_yaml_config(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise UserError(f"config file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            values = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise UserError(f"config file {path} is not valid YAML: {err}".splitlines()[0]) from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping of option: value, got {type(values).__name__}")
    return values


def _field_names(dataclass_types) -> list[str]:
    return [f.name for dc in dataclass_types for f in dataclasses.fields(dc) if f.init]


def parse_args(*dataclass_types, args: list[str] | None = None, description: str | None = None) -> tuple:
    """Parse command-line `args` (default: sys.argv[1:]) into one instance per dataclass type.

    `--config FILE.yaml` supplies defaults; flags given on the command line override them. Read from the command
    line (`args` None), a bad config or value is one line on stderr and exit 2, like the errors `main` reports.
    """
    if args is None:
        try:
            return _parse(dataclass_types, None, description)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    return _parse(dataclass_types, args, description)


def _parse(dataclass_types, args, description):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, remaining = pre.parse_known_args(args)

    parser = HfArgumentParser(dataclass_types, description=description)
    parser.add_argument("--config", default=None, help="YAML file with default values for any option below.")
    if known.config:
        values = load_yaml_config(known.config)
        names = _field_names(dataclass_types)
        for key in values:
            if key not in names:
                hint = difflib.get_close_matches(key, names, n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise UserError(f"unknown key '{key}' in config file {known.config}{suggestion}")
        parser.set_defaults(**values)
    try:
        outputs = parser.parse_args_into_dataclasses(args=remaining, look_for_args_file=False)
    except ValueError as err:  # raised by a dataclass __post_init__ check
        raise UserError(str(err)) from None
    return tuple(outputs[: len(dataclass_types)])  # the last item is a namespace holding `config`


def to_dict(*configs) -> dict[str, Any]:
    """Flatten several dataclass instances into one JSON-ready dict (what the run was really configured with)."""
    merged: dict[str, Any] = {}
    for cfg in configs:
        merged.update(dataclasses.asdict(cfg))
    return merged
