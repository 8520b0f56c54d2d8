"""Tagging schemes of token classifiers: BIO (IOB2), BIOES, BILOU, IO.

A token classifier's labels are *tags* (``B-PER``, ``I-PER``, ``O``); users think in *entity
types* (``PER``). This module detects the scheme from the label names, lists the tags of an
entity type, and converts tag sequences to entity spans and back, so data written in one scheme
(or IOB1, where ``I-X`` may open an entity) is normalised to the model's.

No torch, no transformers: the on-disk path (``inspect``, ``add-label``) imports this.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import LabelError

OUTSIDE = "O"
#: prefix letters of each scheme, in the order their tags are added for a new entity type
PREFIXES = {
    "BIO": ("B", "I"),
    "BIOES": ("B", "I", "E", "S"),
    "BILOU": ("B", "I", "L", "U"),
    "IO": ("I",),
}
_TAG = re.compile(r"([A-Z])([-_])(.+)")  # fullmatch: "$" would let a trailing "\n" in


@dataclass(frozen=True)
class Scheme:
    """A detected tagging scheme.

    Attributes:
        name: ``"BIO"``, ``"BIOES"``, ``"BILOU"`` or ``"IO"``.
        separator: between prefix and type (``-`` in ``B-PER``, ``_`` in ``B_PER``).
        outside: the outside tag (``O``).
    """

    name: str
    separator: str = "-"
    outside: str = OUTSIDE

    @property
    def prefixes(self) -> tuple[str, ...]:
        return PREFIXES[self.name]

    def tags(self, entity_type: str) -> list[str]:
        """Every tag of ``entity_type`` in this scheme, in the order they are added."""
        return [f"{p}{self.separator}{entity_type}" for p in self.prefixes]

    def split(self, tag: str) -> tuple[str, str] | None:
        """``(prefix, type)`` of ``tag``; ``None`` for the outside tag.

        Raises:
            LabelError: a tag that is not of this scheme.
        """
        if tag == self.outside:
            return None
        m = _TAG.fullmatch(tag)
        if not m or m.group(2) != self.separator or m.group(1) not in self.prefixes:
            raise LabelError(
                f"tag {tag!r} is not of the {self.name} scheme (expected {self.outside} or "
                f"{'/'.join(self.prefixes)}{self.separator}TYPE)"
            )
        return m.group(1), m.group(3)

    def entity_types(self, labels: Sequence[str]) -> list[str]:
        """The entity types of ``labels`` in order of first appearance."""
        seen: dict[str, None] = {}
        for tag in labels:
            parts = self.split(tag)
            if parts:
                seen.setdefault(parts[1], None)
        return list(seen)

    def type_of(self, tag: str) -> str | None:
        parts = self.split(tag)
        return parts[1] if parts else None

    def encode(self, spans: Sequence[tuple[int, int, str]], length: int) -> list[str]:
        """Tags of ``length`` tokens holding ``spans`` (``(start, end, type)``, end exclusive,
        not overlapping)."""
        tags = [self.outside] * length
        b, i, *ends = self.prefixes if self.name != "IO" else ("I", "I")
        for start, end, kind in spans:
            for k in range(start, end):
                tags[k] = f"{i}{self.separator}{kind}"
            if self.name == "IO":
                continue
            tags[start] = f"{b}{self.separator}{kind}"
            if ends:  # BIOES/BILOU: E/L closes a multi-token entity, S/U is a single token
                last, single = ends
                if end - start == 1:
                    tags[start] = f"{single}{self.separator}{kind}"
                else:
                    tags[end - 1] = f"{last}{self.separator}{kind}"
        return tags


def detect(labels: Sequence[str]) -> Scheme | None:
    """The scheme of a token classifier's ``labels``, or ``None`` when none is recognisable.

    Recognised: an ``O`` label, and every other label ``P-TYPE`` (or ``P_TYPE``) with one
    separator throughout and prefixes that are a subset of one scheme's, using at least its
    ``B`` (or, for IO, only ``I``). ``B``+``I`` is BIO; with ``E``/``S`` BIOES; with ``L``/``U``
    BILOU; ``I`` alone IO.
    """
    if OUTSIDE not in labels or len(labels) < 2:
        return None
    prefixes, separators = set(), set()
    for tag in labels:
        if tag == OUTSIDE:
            continue
        m = _TAG.fullmatch(tag)
        if not m:
            return None
        prefixes.add(m.group(1))
        separators.add(m.group(2))
    if len(separators) != 1:
        return None
    (separator,) = separators
    if prefixes == {"I"}:
        return Scheme("IO", separator)
    for name in ("BIO", "BIOES", "BILOU"):
        if (
            "B" in prefixes
            and prefixes <= set(PREFIXES[name])
            and (name == "BIO" or prefixes - {"B", "I"})
        ):
            return Scheme(name, separator)
    return None


def spans(tags: Sequence[str], scheme: Scheme) -> list[tuple[int, int, str]]:
    """Entity spans ``(start, end, type)`` (end exclusive) of a tag sequence, read leniently:
    ``I-X`` after ``O`` or after another type opens an entity (IOB1), ``B-X`` always opens one,
    ``E``/``L`` closes one, ``S``/``U`` is one token.

    Raises:
        LabelError: a tag outside ``scheme`` (its position is in the message).
    """
    found: list[tuple[int, int, str]] = []
    start, kind = None, None
    for k, tag in enumerate(tags):
        try:
            parts = scheme.split(tag)
        except LabelError as e:
            raise LabelError(f"token {k + 1}: {e}") from e
        if parts is None:
            if kind is not None:
                found.append((start, k, kind))
            start, kind = None, None
            continue
        prefix, t = parts
        opens = prefix in ("B", "S", "U") or kind != t
        if opens and kind is not None:
            found.append((start, k, kind))
        if opens:
            start, kind = k, t
        if prefix in ("E", "L", "S", "U"):
            found.append((start, k + 1, kind))
            start, kind = None, None
    if kind is not None:
        found.append((start, len(tags), kind))
    return found


def tags_of_types(scheme: Scheme | None, labels: Sequence[str], names: Sequence[str]) -> list[str]:
    """The tags that ``names`` stand for on a model with ``labels``: an entity type (a name
    that is not itself a tag of the scheme) becomes all its tags; a raw tag stays itself.

    Raises:
        LabelError: an entity type on a model with no recognisable scheme.
    """
    out: list[str] = []
    for name in names:
        if name in labels or (scheme is not None and _is_tag(scheme, name)):
            out.append(name)
        elif scheme is None:
            raise LabelError(
                f"{name!r} is not a label of the model and its labels follow no tagging scheme "
                "(BIO, BIOES, BILOU, IO): name the raw tags to add or remove"
            )
        else:
            out.extend(scheme.tags(name))
    return out


def _is_tag(scheme: Scheme, name: str) -> bool:
    try:
        return scheme.split(name) is not None
    except LabelError:
        return False
