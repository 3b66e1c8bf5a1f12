"""Figures logged with runs: the sweep heatmap over the contrastive loss weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def sweep_heatmap(rows: list[dict[str, Any]], metric: str, path: Path, title: str) -> None:
    """A heatmap of ``metric`` over (lambda_f, lambda_v), one cell per pair (the best trial of a pair), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    grid = pd.DataFrame(rows).pivot_table(index="lambda_f", columns="lambda_v", values=metric, aggfunc="max")
    figure, axis = plt.subplots(figsize=(5, 4))
    image = axis.imshow(grid.values, cmap="viridis", origin="lower")
    axis.set_xticks(range(len(grid.columns)), [f"{v:.3g}" for v in grid.columns])
    axis.set_yticks(range(len(grid.index)), [f"{v:.3g}" for v in grid.index])
    axis.set(xlabel="lambda_v", ylabel="lambda_f", title=title)
    for (i, j), value in pd.DataFrame(grid.values).stack().items():
        axis.text(j, i, f"{value:.3f}", ha="center", va="center", color="white", fontsize=8)
    figure.colorbar(image)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
