"""The keywords public functions took before their bundles, still accepted for a while.

``train_model``, ``train``, ``check_old_labels`` and ``sweep`` take the data files' columns as
one :class:`~headsurgeon.data.Columns` (``columns=``) and the gate's tolerances as one
:class:`~headsurgeon.gate.Tolerance` (``tolerance=``). The keywords they replace
(``text_column=``, ``label_column=``, ``image_column=``, ``audio_column=``, ``label_sep=``;
``max_drop=``, ``max_label_drop=``) arrive in the function's ``**legacy`` and are mapped onto
the bundle here, with a :class:`DeprecationWarning` naming the replacement; any other keyword
is refused with :class:`~headsurgeon.errors.OptionsError`. No torch.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Collection
from dataclasses import fields, replace
from typing import Any

from .data import Columns
from .errors import OptionsError
from .gate import Tolerance
from .keywords import refuse_unknown as _refuse

#: old keyword -> field of :class:`Columns`
COLUMN_KEYWORDS = {
    "text_column": "text",
    "label_column": "label",
    "image_column": "image",
    "audio_column": "audio",
    "label_sep": "label_sep",
}
#: old keyword -> field of :class:`Tolerance`
TOLERANCE_KEYWORDS = {"max_drop": "max_drop", "max_label_drop": "max_label_drop"}
#: the old keywords of a function that took the tolerances only (``sweep``)
TOLERANCE = tuple(TOLERANCE_KEYWORDS)
_BUNDLES = {"columns": (Columns, COLUMN_KEYWORDS), "tolerance": (Tolerance, TOLERANCE_KEYWORDS)}


def bundles(
    function: Callable[..., Any],
    legacy: dict[str, Any],
    columns: Columns | None = None,
    tolerance: Tolerance | None = None,
    old: Collection[str] = (*COLUMN_KEYWORDS, *TOLERANCE_KEYWORDS),
    *,
    stacklevel: int = 2,
) -> tuple[Columns, Tolerance]:
    """``(columns, tolerance)`` of a call to ``function``: the bundles given (``None``: the
    defaults) with the old keywords of ``legacy`` set on them, each with a warning
    (``old``: the old keywords ``function`` took; ``stacklevel``: as ``function`` would pass
    to :func:`warnings.warn`). A keyword left over is refused with the close match among the
    old keywords and ``function``'s own parameters.

    Raises:
        OptionsError: a keyword ``function`` does not take; an old keyword given with its
            bundle; a bundle of another type.
    """
    params = [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    function = function.__name__
    given, old_keywords = {"columns": columns, "tolerance": tolerance}, set(old)
    out = {}
    for name, (kind, keywords) in _BUNDLES.items():
        bundle = given[name]
        if bundle is not None and not isinstance(bundle, kind):
            if name != "columns" or not isinstance(bundle, (tuple, list)):
                raise OptionsError(
                    f"`{name}` must be a {kind.__name__}, found {type(bundle).__name__}: "
                    f"{name}={kind.__name__}({', '.join(f.name + '=...' for f in fields(kind))})"
                )
            bundle = Columns.of(bundle)  # the (text, label) pair sweep took
        found = {k: legacy.pop(k) for k in list(legacy) if k in keywords and k in old_keywords}
        out[name] = _apply(function, name, kind, bundle, found, keywords, stacklevel + 2)
    refuse_unknown(function, legacy, old, params)
    return out["columns"], out["tolerance"]


def _apply(function, name, kind, bundle, old: dict[str, Any], keywords, stacklevel: int):
    """``bundle`` (or the default one) with the old keywords' values, warned."""
    if not old:
        return kind() if bundle is None else bundle
    if bundle is not None:
        raise OptionsError(
            f"{function}() got `{name}` and the old keyword(s) {', '.join(old)}: "
            f"set them in {name}={kind.__name__}(...) only"
        )
    new = ", ".join(f"{keywords[k]}=..." for k in old)
    warnings.warn(
        f"{function}(): {', '.join(f'{k}=' for k in old)} is deprecated: pass "
        f"{name}={kind.__name__}({new}) instead",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return replace(kind(), **{keywords[k]: v for k, v in old.items()})


def refuse_unknown(
    function: str,
    legacy: dict[str, Any],
    old: Collection[str] = (),
    params: Collection[str] = (),
) -> None:
    """Refuse the keywords left in ``legacy`` (none of ``function``'s); one that misspells an
    old keyword of ``old`` is pointed to its bundle (``tolerance=Tolerance(max_drop=...)``),
    one that misspells a parameter of ``params`` (``function``'s) to it.

    Raises:
        OptionsError: naming them, as Python would a bad keyword, and the close match.
    """
    _refuse(
        f"{function}()",
        legacy,
        [k for k in (*COLUMN_KEYWORDS, *TOLERANCE_KEYWORDS) if k in set(old)] + list(params),
        takes="see its docstring for the keywords it takes",
        spell=_in_bundle,
    )


def _in_bundle(keyword: str) -> str:
    """How ``keyword`` (an old one) is passed now: ``tolerance=Tolerance(max_drop=...)``."""
    for name, (kind, keywords) in _BUNDLES.items():
        if keyword in keywords:
            return f"{name}={kind.__name__}({keywords[keyword]}=...)"
    return keyword
