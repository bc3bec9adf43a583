"""The package version (its own module, so modules that record it need not import the package's __init__)."""

__version__ = "0.1.0"
