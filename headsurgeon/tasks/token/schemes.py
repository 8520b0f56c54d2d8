"""Tagging schemes of token classifiers: BIO (IOB2), BIOES, BILOU, IO.

A token classifier's labels are *tags* (``B-PER``, ``I-PER``, ``O``); users think in *entity
types* (``PER``). This module detects the scheme from the label names, lists the tags of an
entity type, and converts tag sequences to entity spans and back, so data written in one scheme
(or IOB1, where ``I-X`` may open an entity) is normalised to the model's.

No torch, no transformers: the on-disk path (``inspect``, ``add-label``) imports this.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import LabelError

logger = logging.getLogger(__name__)

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


def describe(labels: Sequence[str]) -> dict[str, str | list[str] | None]:
    """``{"scheme": "BIO" | ... | None, "entity_types": [...]}`` of a token classifier's labels
    (what ``inspect`` shows)."""
    scheme = detect(labels)
    return {
        "scheme": scheme.name if scheme else None,
        "entity_types": scheme.entity_types(labels) if scheme else [],
    }


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
    """The tags that ``names`` stand for on a model with ``labels``: an entity type becomes all
    its tags in ``scheme``; a raw tag stays itself.

    A raw tag is a label of the model, ``O``, or a name shaped like a tag (``E-PER``, ``B_X``: one
    capital letter, ``-`` or ``_``, a type), so tags of exotic schemes can be named one by one.
    On a model whose labels hold no tag at all (``NOUN``, ``VERB``: a flat label set), every
    name is raw.

    Raises:
        LabelError: an entity type on a model whose tags follow no recognisable scheme.
    """
    out: list[str] = []
    for name in names:
        raw = not isinstance(name, str) or name in labels or name == OUTSIDE or _TAG.match(name)
        if raw or _flat(scheme, labels):
            out.append(name)
        elif scheme is None:
            raise LabelError(
                f"{name!r} is not a label of the model and its labels follow no tagging scheme "
                f"I recognise (BIO, BIOES, BILOU, IO; found {_shown_labels(labels)}): name the "
                f"raw tags to add or remove (e.g. B-{name} and I-{name})"
            )
        else:
            out.extend(scheme.tags(name))
    return out


def tags_of_type(labels: Sequence[str], entity_type: str) -> list[str]:
    """The tags of ``entity_type`` among ``labels`` (in id order); empty when the labels follow
    no scheme or hold none of its tags."""
    scheme = detect(labels)
    if scheme is None:
        return []
    return [t for t in labels if t != scheme.outside and scheme.type_of(t) == entity_type]


def tags_to_add(labels: Sequence[str], names: Sequence[str]) -> list[str]:
    """The tags to append to a token classifier with ``labels`` for the ``names`` a user gave.

    An entity type becomes every tag of the model's scheme for it (``PRODUCT`` is ``B-PRODUCT``,
    ``I-PRODUCT`` in BIO); a raw tag stays itself (see :func:`tags_of_types`).

    Raises:
        LabelError: an entity type the model already has (any of its tags), or an entity type on
        a model whose labels follow no recognisable scheme.

    Example:
        >>> tags_to_add(["O", "B-PER", "I-PER"], ["PRODUCT"])
        ['B-PRODUCT', 'I-PRODUCT']
    """
    scheme = detect(labels)
    out: list[str] = []
    for name in names:
        tags = tags_of_types(scheme, labels, [name])
        present = tags_of_type(labels, name) if tags != [name] else []
        if present:
            missing = [t for t in tags if t not in labels]
            hint = (
                f", or name a missing tag of it by itself (--name {missing[0]})" if missing else ""
            )
            raise LabelError(
                f"entity type {name!r} is already in the model ({', '.join(present)}): choose "
                f"another type{hint}"
            )
        out.extend(tags)
    return out


def tags_to_remove(labels: Sequence[str], names: Sequence[str]) -> list[str]:
    """The tags to drop from a token classifier with ``labels``: an entity type stands for all
    its tags in the model, a label for itself; each once, in the order given.

    On labels that follow no scheme every name is a label (the caller reports unknown ones).

    Raises:
        LabelError: a name that is neither a label nor an entity type of the model.
    """
    scheme = detect(labels)
    out: list[str] = []
    for name in names:
        if scheme is None or not isinstance(name, str) or name in labels:
            out.append(name)
            continue
        tags = tags_of_type(labels, name)
        if not tags:
            raise LabelError(
                f"{name!r} is neither a label nor an entity type of the model (entity types: "
                f"{', '.join(scheme.entity_types(labels)) or 'none'}; labels: "
                f"{_shown_labels(labels)})"
            )
        out.extend(tags)
    return list(dict.fromkeys(out))


def check_removal(labels: Sequence[str], drop: Sequence[str], *, force: bool = False) -> None:
    """Refuse dropping tags ``drop`` from ``labels`` when that breaks their recognised scheme.

    Removing the outside tag ``O``, or some tags of an entity type while others stay (``B-X``
    without ``I-X``), leaves a tagger whose tags follow no scheme (``inspect``: "none
    recognised") and whose entities can no longer be read. Whole entity types may go. Labels
    that follow no scheme have nothing to break.

    Args:
        labels: the model's tags, by id.
        drop: the tags to remove (already expanded from entity types).
        force: remove them anyway; a warning says what breaks.

    Raises:
        LabelError: naming the tags, the scheme and the fix (remove the whole type by its name,
        or ``--force`` / ``force=True``).
    """
    scheme = detect(labels)
    gone = set(drop)
    if scheme is None or not gone or gone >= set(labels):  # removing every label: the caller's
        return
    broken = _broken_by(scheme, labels, gone)
    if broken is None:
        return
    problem, fix = broken
    if force:
        logger.warning("%s (removed anyway: --force)", problem)
        return
    raise LabelError(f"{problem}: {fix}, or pass --force (force=True) to remove the tags anyway")


def _broken_by(scheme: Scheme, labels: Sequence[str], gone: set[str]) -> tuple[str, str] | None:
    """``(problem, fix)`` when dropping ``gone`` breaks ``scheme``, else ``None``."""
    types = {k: tags_of_type(labels, k) for k in scheme.entity_types(labels)}
    if scheme.outside in gone:
        kind = next((k for k, tags in types.items() if not gone >= set(tags)), next(iter(types)))
        problem = (
            f"removing {scheme.outside} (the tag of tokens outside any entity) would leave tags "
            f"that follow no scheme (the model's is {scheme.name})"
        )
        example = f"remove-label MODEL {kind} removes {', '.join(types[kind])}"
        return problem, f"keep {scheme.outside} and remove entity types by name ({example})"
    for kind, tags in types.items():
        left = [t for t in tags if t not in gone]
        if left and len(left) < len(tags):
            removed = ", ".join(t for t in tags if t in gone)
            problem = (
                f"removing {removed} but not {', '.join(left)} would break the model's "
                f"{scheme.name} tagging of {kind}"
            )
            example = f"remove-label MODEL {kind} removes {', '.join(tags)}"
            return problem, f"remove the whole type by its name ({example})"
    return None


def renamed_type(labels: Sequence[str], old: str, new: str) -> list[str] | None:
    """The labels with every tag of entity type ``old`` renamed to type ``new`` (``B-PER`` →
    ``B-PERSON``, ids unchanged); ``None`` when ``old`` is a label, or the labels follow no
    scheme (then it is an ordinary label rename).

    Raises:
        LabelError: ``old`` neither a label nor an entity type; ``new`` shaped like a tag, equal
        to ``old``, or an entity type (or label) the model already has.
    """
    scheme = detect(labels)
    if old in labels or scheme is None:
        return None
    types = scheme.entity_types(labels)
    if old not in types:
        raise LabelError(
            f"{old!r} is neither a label nor an entity type of the model (entity types: "
            f"{', '.join(types) or 'none'}; labels: {_shown_labels(labels)})"
        )
    if new == old:
        raise LabelError(f"OLD and NEW are the same ({old}): nothing to do; give NEW another name")
    if new == OUTSIDE or _TAG.match(new):
        raise LabelError(
            f"{new!r} is shaped like a tag, but {old} is an entity type: give NEW as a type "
            "name without a prefix (PERSON, not B-PERSON), or rename the tags one by one"
        )
    if new in types or new in labels:
        raise LabelError(
            f"{new!r} is already an entity type or label of the model: choose another NEW "
            f"name, or remove-label {new} first"
        )
    renamed = []
    for tag in labels:
        parts = scheme.split(tag)
        hit = parts is not None and parts[1] == old
        renamed.append(f"{parts[0]}{scheme.separator}{new}" if hit else tag)
    return renamed


def _flat(scheme: Scheme | None, labels: Sequence[str]) -> bool:
    """Labels with no scheme and no tag-shaped label (a POS tagger's ``NOUN``, ``VERB``)."""
    return scheme is None and not any(_TAG.match(t) for t in labels if isinstance(t, str))


def _shown_labels(labels: Sequence[str], limit: int = 8) -> str:
    return ", ".join(map(str, labels[:limit])) + (", ..." if len(labels) > limit else "")
