"""The package version (its own module, so that every part of seqrl reads it without importing the package)."""

__version__ = "0.1.0"
