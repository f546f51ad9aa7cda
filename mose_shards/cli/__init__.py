"""The command line: argument parsing only, one module per command family; `main(argv) -> int`."""

from .main import main

__all__ = ["main"]
