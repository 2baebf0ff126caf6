"""Recipe configuration: typed dataclass argument groups, `--config FILE.yaml` defaults, command-line overrides.

Precedence: dataclass defaults < YAML file < command-line flags. A YAML key that no argument group defines is an
error naming the key and the file (the pattern of TRL's `TrlParser.parse_args_and_config`).

Each parsed instance remembers which of its options the user set (in the YAML file or as a flag):
`explicit_keys(instance)`. Recipes use it to choose defaults that depend on the run (e.g. a learning rate that suits
the backbone, `toolkit.training.backbone_defaults`) for the options the user left alone, never overriding a choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
from typing import Any

import yaml
from transformers import HfArgumentParser

from toolkit.errors import UserError, exit_on_user_error


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


_UNSET = object()
_EXPLICIT_ATTRIBUTE = "_explicit_keys"


def _flags_given(parser: argparse.ArgumentParser, names: list[str], args: list[str]) -> set[str]:
    """Option names that appear in the command line `args` (long, abbreviated, `--no_<flag>` forms alike)."""
    parser.set_defaults(**{name: _UNSET for name in names})
    namespace, _ = parser.parse_known_args(args)
    return {name for name in names if getattr(namespace, name, _UNSET) is not _UNSET}


def explicit_keys(instance) -> set[str]:
    """Options of a dataclass instance the user set: those named in the YAML file or on the command line when it came
    from `parse_args`, plus any field whose value differs from its dataclass default (instances built or changed in
    code, e.g. by a test or a driver script)."""
    given = set(getattr(instance, _EXPLICIT_ATTRIBUTE, ()))
    for f in dataclasses.fields(instance):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            given.add(f.name)
            continue
        if getattr(instance, f.name) != default:
            given.add(f.name)
    return given


def parse_args(*dataclass_types, args: list[str] | None = None, description: str | None = None) -> tuple:
    """Parse command-line `args` (default: sys.argv[1:]) into one instance per dataclass type.

    `--config FILE.yaml` supplies defaults; flags given on the command line override them. Every instance records
    the names of its options set in either place (read them with `explicit_keys`). Parsing the real
    command line (`args=None`), a mistake (unknown key, bad value, missing tracker) is one `error:` line and exit 2
    instead of a traceback; with an explicit `args` list the `UserError` is raised, for tests and callers.
    """
    if args is None:
        return exit_on_user_error(_parse_args)(*dataclass_types, args=None, description=description)
    return _parse_args(*dataclass_types, args=args, description=description)


def _parse_args(*dataclass_types, args: list[str] | None = None, description: str | None = None) -> tuple:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, remaining = pre.parse_known_args(args)

    parser = HfArgumentParser(dataclass_types, description=description)
    parser.add_argument("--config", default=None, help="YAML file with default values for any option below.")
    yaml_keys: set[str] = set()
    if known.config:
        values = load_yaml_config(known.config)
        names = _field_names(dataclass_types)
        for key in values:
            if key not in names:
                hint = difflib.get_close_matches(key, names, n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise UserError(f"unknown key '{key}' in config file {known.config}{suggestion}")
        choices = {
            f.name: f.metadata["choices"]
            for dc in dataclass_types
            for f in dataclasses.fields(dc)
            if "choices" in f.metadata
        }  # argparse checks choices of flags only, not of defaults set from the file
        for key, value in values.items():
            if key in choices and value not in choices[key]:
                raise UserError(f"{key} in config file {known.config} must be one of {choices[key]}, not {value!r}")
        parser.set_defaults(**values)
        yaml_keys = set(values)
    try:
        outputs = parser.parse_args_into_dataclasses(args=remaining, look_for_args_file=False)
    except ValueError as err:  # raised by a dataclass __post_init__ check
        raise UserError(str(err)) from None
    given = yaml_keys | _flags_given(parser, _field_names(dataclass_types), remaining)
    outputs = outputs[: len(dataclass_types)]  # the last item is a namespace holding `config`
    for instance in outputs:
        setattr(instance, _EXPLICIT_ATTRIBUTE, frozenset(given & set(_field_names([type(instance)]))))
    return tuple(outputs)


def to_dict(*configs) -> dict[str, Any]:
    """Flatten several dataclass instances into one JSON-ready dict (what the run was really configured with)."""
    merged: dict[str, Any] = {}
    for cfg in configs:
        merged.update(dataclasses.asdict(cfg))
    return merged
