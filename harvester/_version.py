"""The version, in one place (the manifest and the state record it)."""

__version__ = "0.1.0"
