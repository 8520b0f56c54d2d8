"""What every old-label gate shares, whatever its task: the tolerances and their check, and the
per-label part of a failure's sentence.

Each task's gate builds on these (the accuracy gate of :mod:`headsurgeon.tasks.accuracy`, the
entity gate of :mod:`headsurgeon.tasks.token.gate`); :mod:`headsurgeon.checks` runs them. No
torch, no transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import OptionsError
from .keywords import checked_keywords

#: changed labels a report's ``render`` shows
DEFAULT_SHOW = 10


@checked_keywords
@dataclass
class Tolerance:
    """The gate's tolerances (points): ``max_drop`` in all (``None``: the task's default),
    ``max_label_drop`` for any one old label (``None``: not checked). An unknown keyword is an
    :class:`~headsurgeon.errors.OptionsError` naming the fields and the close match, and so
    is a negative or NaN tolerance (:func:`check_max_drop`)."""

    max_drop: float | None = None
    max_label_drop: float | None = None

    def __post_init__(self) -> None:
        check_max_drop(self.max_drop, self.max_label_drop)


def check_max_drop(max_drop: float | None, max_label_drop: float | None = None) -> None:
    """Refuse a negative or NaN tolerance (in points) before any work (``max_drop`` ``None``:
    the task's default, which is valid).

    Raises:
        OptionsError: naming the value found.
    """
    if max_drop is not None and not max_drop >= 0:  # also refuses NaN
        raise OptionsError(f"max_drop must be >= 0 percentage points, got {max_drop}")
    if max_label_drop is not None and not max_label_drop >= 0:
        raise OptionsError(f"max_label_drop must be >= 0 percentage points, got {max_label_drop}")


def beyond_reason(check: dict[str, Any], phrase: str) -> str | None:
    """The per-label part of a failure, from a check's dict: how many labels went beyond the
    per-label tolerance and the worst three (``phrase`` holds ``{limit}``), or ``None``."""
    num = (int, float)
    beyond = [str(n) for n in check.get("labels_beyond") or []]
    if not beyond:
        return None
    rows = {
        str(r.get("label")): r.get("change_pts")
        for r in check.get("per_label") or []
        if isinstance(r, dict)
    }
    shown = ", ".join(
        f"{n} ({rows[n]:+.1f} pt)" if isinstance(rows.get(n), num) else n for n in beyond[:3]
    )
    more = f" and {len(beyond) - 3} more" if len(beyond) > 3 else ""
    limit = check.get("max_label_drop")
    limit = f"the {limit:g} pt" if isinstance(limit, num) else "the tolerance"
    return f"{len(beyond)} {phrase.format(limit=limit)}: {shown}{more}"


def labels_beyond(per_label: list[dict[str, Any]], max_label_drop: float | None) -> list[str]:
    """The labels of ``per_label`` rows whose ``change_pts`` is below ``-max_label_drop``
    (none when it is ``None``)."""
    if max_label_drop is None:
        return []
    return [r["label"] for r in per_label if -r["change_pts"] > max_label_drop]
