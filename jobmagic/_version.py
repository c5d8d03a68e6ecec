"""The package version: the one place it is written (npm's package.json must match)."""

__version__ = "0.1.0"
