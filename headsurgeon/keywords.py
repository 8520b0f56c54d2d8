"""Refusing a keyword that a function or an options bundle does not take, with its close match.

One message for every such refusal: the keywords the public functions do not take
(:mod:`headsurgeon.legacy`) and the fields the bundles do not have
(:class:`~headsurgeon.data.Columns`, :class:`~headsurgeon.gate.Tolerance`, through
:func:`checked_keywords`). It sits below both, so it imports nothing of headsurgeon but its
errors. No torch.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields

from .errors import OptionsError


def close_match(name: str, known: Iterable[str]) -> str | None:
    """The keyword of ``known`` that ``name`` most likely misspells (:mod:`difflib`), or
    ``None``."""
    found = difflib.get_close_matches(name, list(known), n=1)
    return found[0] if found else None


def refuse_unknown(
    owner: str,
    given: Iterable[str],
    known: Sequence[str],
    *,
    takes: str | None = None,
    spell: Callable[[str], str] = str,
) -> None:
    """Refuse the keywords of ``given`` that are not in ``known``.

    Args:
        owner: who was called, as the message names it (``"Tolerance()"``).
        given: the keywords passed.
        known: the keywords ``owner`` takes (the close match is looked for among them).
        takes: what the message says ``owner`` takes (default: ``known``, listed).
        spell: how the message writes a close match (e.g. as the bundle that now holds it).

    Raises:
        OptionsError: naming the unknown keywords, what ``owner`` takes and, for each that
            has one, the close match (``did you mean max_drop?``).
    """
    unknown = [k for k in given if k not in known]
    if not unknown:
        return
    near = {k: close_match(k, known) for k in unknown}
    named = len(unknown) > 1  # with several, each guess says which keyword it is for
    guesses = "; ".join(
        f"{f'{k!r}: ' if named else ''}did you mean {spell(m)}?" for k, m in near.items() if m
    )
    raise OptionsError(
        f"{owner} got unexpected keyword argument{'s' if named else ''} "
        f"{', '.join(map(repr, unknown))}"
        + (f" ({guesses})" if guesses else "")
        + f"; {takes or 'it takes ' + ', '.join(known)}"
    )


def checked_keywords(cls: type) -> type:
    """Make the dataclass ``cls`` refuse a keyword that is none of its fields with
    :class:`~headsurgeon.errors.OptionsError` (:func:`refuse_unknown`), where its generated
    ``__init__`` raises a bare ``TypeError``; positional and known keyword calls are
    unchanged.

    Example:
        >>> @checked_keywords
        ... @dataclass
        ... class Tolerance: max_drop: float | None = None
    """
    init = cls.__init__
    names = [f.name for f in fields(cls) if f.init]

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        refuse_unknown(f"{cls.__name__}()", kwargs, names)
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls
