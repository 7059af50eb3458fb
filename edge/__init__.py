"""Lineside: a Level-2 line controller for pharmaceutical serialization."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lineside")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
