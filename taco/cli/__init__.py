"""Entry points (`taco-*` commands): each parses its config or arguments and calls the package."""

import argparse
import sys
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad argument in one line (`<prog>: error: ...; see --help`, exit 2)
    instead of its usage block, as every taco command reports a config mistake."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


MODEL_HELP = (
    "models:/NAME/VERSION, models:/MODEL_ID, runs:/RUN_ID/model, a run id or its first characters"
)


def command_parser(prog: str, doc: str | None) -> ArgumentParser:
    """A command's parser whose help keeps the examples of its module docstring as written."""
    return ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def model_source(parser: argparse.ArgumentParser, folder_help: str) -> argparse._ActionsContainer:
    """--model (a logged or registered model) or --model-dir (a folder), one required."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help=MODEL_HELP)
    source.add_argument("--model-dir", help=folder_help)
    return source
