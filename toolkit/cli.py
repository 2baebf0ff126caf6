"""`toolkit` command line: `toolkit push`, `toolkit convert-hf-bert`, `toolkit evaluate`, `toolkit visualize-attention`,
`toolkit demo-data`, `toolkit embed`. Each subcommand lives next to the code it runs, which registers it with `add_cli`."""

from __future__ import annotations

import argparse
import importlib

from toolkit.errors import exit_on_user_error

SUBCOMMAND_MODULES = (
    "toolkit.hub",
    "toolkit.models.bert.convert",
    "toolkit.evaluation.evaluate_model",
    "toolkit.visualize",
    "toolkit.data.demo",
    "toolkit.embeddings",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolkit", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # an optional part not present in this checkout
            if err.name and err.name.startswith("toolkit"):
                continue
            raise
        if hasattr(module, "add_cli"):
            module.add_cli(subparsers)
    for subparser in subparsers.choices.values():  # every subcommand's --help shows its defaults
        subparser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    import toolkit  # noqa: F401  (registers the model families with the Auto classes)

    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
