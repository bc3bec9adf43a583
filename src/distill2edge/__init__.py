"""distill2edge: fine-tune, distill and export small language models for edge devices."""

__version__ = "0.1.0"
