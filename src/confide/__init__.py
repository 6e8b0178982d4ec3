"""Confide: self-hosted, end-to-end encrypted video meetings."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("confide")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"
