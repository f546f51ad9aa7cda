"""The package version, in the bottom layer so that every stage can stamp it."""

__version__ = "0.1.0"
