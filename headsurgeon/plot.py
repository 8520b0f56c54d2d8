"""Pictures of an old-label check: each old label's accuracy before and after.

matplotlib is optional (``pip install 'headsurgeon[plot]'``) and imported only when drawing.
"""

from __future__ import annotations

import os
from pathlib import Path

from .checks import CheckReport
from .errors import OptionsError


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


def plot_report(report: CheckReport, path: str | os.PathLike) -> Path:
    """Draw each old label's accuracy before and after (worst change on top) into ``path``.

    Needs matplotlib (``pip install matplotlib`` or ``pip install headsurgeon[plot]``).

    Raises:
        OptionsError: matplotlib is not installed.
    """
    plt = require_matplotlib()
    rows = report.per_label
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.22 * len(rows)))
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows, strict=True):
        ax.plot([r["before"], r["after"]], [y, y], color="0.7", zorder=1)
    ax.scatter([r["before"] for r in rows], ys, label="parent", color="tab:blue", zorder=2)
    ax.scatter([r["after"] for r in rows], ys, label="child", color="tab:red", zorder=3)
    ax.set_yticks(ys, [f"{r['label']} ({r['support']})" for r in rows], fontsize=7)
    ax.set_xlabel("accuracy (recall) on the label's holdout examples")
    ax.set_xlim(-0.02, 1.02)
    ax.set_title(
        f"old-label check {'passed' if report.passed else 'FAILED'}: "
        f"{report.accuracy_before:.1%} -> {report.accuracy_after:.1%} "
        f"(drop {report.drop_pts:.2f} pt, allowed {report.max_drop:g}"
        + ("" if report.max_label_drop is None else f", {report.max_label_drop:g} per label")
        + ")"
        + ("" if report.drop_uncertainty is None else "\n" + report.drop_uncertainty.describe()),
        fontsize=9,
    )
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
