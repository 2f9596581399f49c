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
