"""Pictures of an old-label check: each old label's accuracy before and after (for a token
classifier's entity check: each old entity type's F1).

matplotlib is optional (``pip install 'headsurgeon[plot]'``) and imported only when drawing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import OptionsError

if TYPE_CHECKING:
    from .tasks.base import GateReport


def require_matplotlib():
    """Return ``matplotlib.pyplot`` (non-interactive backend).

    Raises:
        OptionsError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise OptionsError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'headsurgeon[plot]')"
        ) from e
    return plt


def plot_report(report: GateReport, path: str | os.PathLike) -> Path:
    """Draw each old label's measure before and after (worst change on top) into ``path``: a
    label check's accuracy, an entity check's F1 per old type (the report's
    :meth:`~headsurgeon.tasks.base.GateReport.chart` names the axis and the title).

    Needs matplotlib (``pip install matplotlib`` or ``pip install headsurgeon[plot]``).

    Raises:
        OptionsError: matplotlib is not installed.
    """
    xlabel, title = report.chart()
    return _draw_before_after(report.per_label, xlabel, title, path)


def _draw_before_after(rows: list[dict], xlabel: str, title: str, path) -> Path:
    """One row per label: the parent's value (blue) and the child's (red), joined by a line;
    ``rows`` hold ``label``, ``support``, ``before`` and ``after`` (fractions)."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.22 * len(rows)))
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows, strict=True):
        ax.plot([r["before"], r["after"]], [y, y], color="0.7", zorder=1)
    ax.scatter([r["before"] for r in rows], ys, label="parent", color="tab:blue", zorder=2)
    ax.scatter([r["after"] for r in rows], ys, label="child", color="tab:red", zorder=3)
    ax.set_yticks(ys, [f"{r['label']} ({r['support']})" for r in rows], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_xlim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
