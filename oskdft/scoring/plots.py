"""DET curves and score histograms as PNG files.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no
global state), so plotting works on headless machines and inside worker processes.
"""

from __future__ import annotations

from typing import Mapping, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import norm

from oskdft.scoring.metrics import compute_eer, error_rates
from oskdft.utils.io import Pathlike, atomic_path

# Error rates (%) marked on the normal-deviate axes of a DET plot.
DET_TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40)
ScoresAndLabels = Tuple[np.ndarray, np.ndarray]


def plot_det(path: Pathlike, curves: Mapping[str, ScoresAndLabels], title: str) -> None:
    """One DET curve per back end (``name -> (scores, labels)``) on normal-deviate axes, the
    EER point of each marked."""
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot()
    limit = norm.ppf(np.array([DET_TICKS[0], DET_TICKS[-1]]) / 100)
    for name, (scores, labels) in curves.items():
        _, p_miss, p_fa = error_rates(scores, labels)
        eer, _ = compute_eer(scores, labels)
        # Rates of exactly 0 or 1 sit at infinity on these axes; clip them to the frame.
        x = norm.ppf(np.clip(p_fa, 1e-6, 1 - 1e-6))
        y = norm.ppf(np.clip(p_miss, 1e-6, 1 - 1e-6))
        (line,) = ax.plot(x, y, label=f"{name} (EER {100 * eer:.2f}%)")
        ax.plot(norm.ppf(eer), norm.ppf(eer), "o", color=line.get_color())
    ticks = norm.ppf(np.array(DET_TICKS) / 100)
    tick_labels = [f"{t:g}" for t in DET_TICKS]
    ax.set_xticks(ticks, tick_labels)
    ax.set_yticks(ticks, tick_labels)
    ax.set_xlim(*limit)
    ax.set_ylim(*limit)
    ax.plot(limit, limit, ":", color="grey", linewidth=0.8)
    ax.set_xlabel("False acceptance rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    _save(fig, path)


def plot_histograms(path: Pathlike, curves: Mapping[str, ScoresAndLabels], title: str) -> None:
    """Target and non-target score histograms, one panel per back end."""
    fig = Figure(figsize=(4.0 * len(curves), 3.5))
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (name, (scores, labels)) in zip(axes, curves.items(), strict=True):
        labels = np.asarray(labels, dtype=bool)
        bins = np.histogram_bin_edges(scores, bins=60)
        # One filled outline per class instead of one rectangle per bin: much faster to draw.
        for mask, label in ((~labels, "non-target"), (labels, "target")):
            ax.hist(
                scores[mask], bins=bins, density=True, histtype="stepfilled", alpha=0.5, label=label
            )
        ax.set_title(name)
        ax.set_xlabel("score")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Figure, path: Pathlike) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
