"""The error every model-loading path raises, in a module of its own: `loading.py` (which resolves
`embedded:NAME` through `embedded.py`) and `embedded.py` (whose errors derive from it) both import it."""

from __future__ import annotations


class ModelLoadError(Exception):
    """A model reference could not be turned into a loaded model; the message says why and what to use."""
