"""The ``rcmlake`` command: options → Project → one method → render."""

from rcmlake.cli.app import main

__all__ = ["main"]
