"""The matplotlib setup the report's figures share: a headless one-Axes figure, saved the same way.

matplotlib is imported only when a figure is drawn (the Agg backend, so no display is needed), and
the figure is closed whether or not it was saved, so a long run does not accumulate open figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@contextmanager
def report_axes(figsize: tuple[float, float] = (8, 4)) -> Iterator[tuple[Figure, Axes]]:
    """(figure, axes) of a new headless figure; closed when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    try:
        yield fig, ax
    finally:
        plt.close(fig)


def save_figure(fig: Figure, path: Path) -> None:
    """Lay out and write `fig` as the report's PNGs are written (120 dpi)."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
