"""Process environment variables set for the span of a ``with`` block."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def environment_variables(**values: str) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` while open (child processes started meanwhile
    inherit them); on closing, each is restored to its former value or removed if unset."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
