"""Command-line helpers shared by the project's CLIs."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from agent.config import ConfigError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with user mistakes reported as one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def positive_int(name: str, value: str | None) -> int | None:
    """``value`` as a positive int (None stays None); else :class:`ConfigError` naming ``name``."""
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got '{value}'") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive, got {number}")
    return number


def line_buffered_stdout() -> None:
    """Write stdout line by line also into a pipe or a file (``make ... | tee``), where
    Python would otherwise hold a long command's lines until it ends."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
