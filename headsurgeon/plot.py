"""Pictures of an old-label check: each old label's accuracy before and after (for a token
classifier's entity check: each old entity type's F1).

matplotlib is optional (``pip install 'headsurgeon[plot]'``) and imported only when drawing.
"""

from __future__ import annotations

import os
from pathlib import Path

from .checks import CheckReport
from .entity_check import KIND, EntityCheckReport
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


def plot_report(report: CheckReport | EntityCheckReport, path: str | os.PathLike) -> Path:
    """Draw each old label's accuracy before and after (worst change on top) into ``path``; an
    :class:`~headsurgeon.entity_check.EntityCheckReport` is drawn by :func:`plot_entity_report`.

    Needs matplotlib (``pip install matplotlib`` or ``pip install headsurgeon[plot]``).

    Raises:
        OptionsError: matplotlib is not installed.
    """
    if getattr(report, "kind", None) == KIND:
        return plot_entity_report(report, path)
    title = (
        f"old-label check {'passed' if report.passed else 'FAILED'}: "
        f"{report.accuracy_before:.1%} -> {report.accuracy_after:.1%} "
        f"(drop {report.drop_pts:.2f} pt, allowed {report.max_drop:g}"
        + ("" if report.max_label_drop is None else f", {report.max_label_drop:g} per label")
        + ")"
        + ("" if report.drop_uncertainty is None else "\n" + report.drop_uncertainty.describe())
    )
    return _draw_before_after(
        report.per_label, "accuracy (recall) on the label's holdout examples", title, path
    )


def plot_entity_report(report: EntityCheckReport, path: str | os.PathLike) -> Path:
    """Draw each old entity type's F1 (strict) before and after (worst change on top) into
    ``path``.

    Raises:
        OptionsError: matplotlib is not installed.
    """
    title = (
        f"old-type check {'passed' if report.passed else 'FAILED'}: entity F1 "
        f"{100 * report.f1_before:.2f} -> {100 * report.f1_after:.2f} "
        f"(drop {report.drop_pts:.2f} pt, allowed {report.max_drop:g}"
        + ("" if report.max_label_drop is None else f", {report.max_label_drop:g} per type")
        + f")\n{report.n_old_entities} old entities in {report.n_sentences} sentences, "
        f"{report.scheme} scheme"
    )
    return _draw_before_after(report.per_label, "entity F1 (strict)", title, path)


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
