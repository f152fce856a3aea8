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


def first_line(error: BaseException, limit: int = 300) -> str:
    """What a one-line error message shows of ``error``: its message's first line, at most
    ``limit`` characters, or its type's name when it has no message."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def describe(error: BaseException, limit: int = 300) -> str:
    """``'TypeName: first line'`` of ``error`` (:func:`first_line`), or its type's name alone
    when it has no message."""
    message = first_line(error, limit)
    name = type(error).__name__
    return name if message == name and not str(error).strip() else f"{name}: {message}"


def key_value(text: str, expected: str) -> tuple[str, str]:
    """``'KEY=VALUE'`` -> ``('KEY', 'VALUE')``, both stripped (the value may hold ``=``);
    :class:`ConfigError` ``"<expected>, got '<text>'"`` without an ``=`` or a key. The one
    parser of every KEY=VALUE the CLIs take (``--set``, ``--task-set``, ``--arm``, GRID)."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise ConfigError(f"{expected}, got '{text}'")
    return key.strip(), value.strip()


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
