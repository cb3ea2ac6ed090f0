"""Writing a figure: one atomic writer for every stage's plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .fileio import atomic_path


def save_figure(figure: Any, path: str | Path, dpi: int = 110, tight: bool = True) -> None:
    """Write `figure` atomically (format from the suffix, PNG without one) and free it.

    `tight` crops the canvas to what is drawn (bbox_inches="tight")."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(
            tmp,
            format=Path(path).suffix.lstrip(".") or "png",
            dpi=dpi,
            bbox_inches="tight" if tight else None,
        )
    plt.close(figure)
