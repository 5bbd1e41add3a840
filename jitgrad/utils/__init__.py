"""Utilities: ``data`` (datasets and loaders)."""

from jitgrad.utils import data

__all__ = ["data"]
