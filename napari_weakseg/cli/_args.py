"""Argument helpers shared by the sub-commands: ``KEY=VALUE`` tag assignments."""

from __future__ import annotations


def split_assignment(text: str, error: type[Exception], message: str) -> tuple[str, str]:
    """``"KEY=VALUE"`` → ``(KEY, VALUE)`` with the white space around each removed (the
    value may hold ``=``). Without ``=`` or with an empty key: raises ``error(message)``
    (each option words its own: ``--tag``, ``--set``; argparse types raise
    ``argparse.ArgumentTypeError``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise error(message)
    return key, value.strip()
