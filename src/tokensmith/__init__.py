"""Tokensmith: personal access tokens for a developer platform."""

__version__ = "0.1.0"
