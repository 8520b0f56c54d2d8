"""Pure label bookkeeping: ordered label names, ``id2label``/``label2id``, validation.

No torch, no transformers: the on-disk path imports this. A label set is an ordered list of
names, index = class id. Configs are handled as plain dicts (``config.json``) or as objects with
``id2label`` (a transformers ``PretrainedConfig``).

Never assign ``config.num_labels`` to grow a label set: transformers rebuilds ``id2label`` as
``LABEL_0..n-1`` when the count changes. :func:`apply_to_config` sets the maps directly.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import LabelError
from .tasks import TOKEN
from .tasks.token import schemes

#: keys some configs keep the label count in instead of ``len(id2label)``: PvtConfig has a real
#: ``num_labels`` field; timm's wrapper saves ``num_classes`` (and ``label_names``) on disk
COUNT_KEYS = ("num_labels", "num_classes")
#: the names timm's wrapper saves on disk in place of ``id2label``
NAMES_KEY = "label_names"


def _field(config: Any, key: str) -> Any:
    return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)


def _stored_count(config: Any) -> tuple[str, int] | None:
    """``(key, count)`` of a label count stored apart from ``id2label``, or ``None``."""
    for key in COUNT_KEYS:
        value = _field(config, key)
        if isinstance(value, int) and not isinstance(value, bool):
            return key, value
    return None


def labels_of(config: Any) -> list[str]:
    """Return the label names of ``config`` ordered by class id.

    The names come from ``id2label``; a config without one but with a label count of its own
    (``num_labels``, as ``PvtConfig(num_labels=3)`` keeps it, or timm's ``num_classes``) has
    transformers' default names ``LABEL_0..n-1`` (timm's ``label_names`` when saved).

    Args:
        config: a ``config.json`` dict or an object with an ``id2label`` attribute.

    Raises:
        LabelError: no labels at all, ids that are not ``0..n-1``, or a stored label count
        that disagrees with ``id2label``.
    """
    id2label = _field(config, "id2label")
    if not id2label:
        return _unnamed_labels(config)
    if not isinstance(id2label, Mapping):
        raise LabelError(
            f"the model config's id2label is a {type(id2label).__name__}, expected an object "
            'mapping ids to names ({"0": "name", ...}): fix config.json'
        )
    by_id: dict[int, str] = {}
    for k, v in id2label.items():
        try:
            if isinstance(k, bool) or not isinstance(k, (int, str)):
                raise TypeError(type(k).__name__)
            i = int(k)
        except (TypeError, ValueError) as e:
            raise LabelError(f"id2label has a non-integer id {_shown(k)}: fix config.json") from e
        if not isinstance(v, str):
            raise LabelError(
                f"id2label maps id {i} to a {type(v).__name__} ({_shown(v)}), expected a name: "
                "fix config.json"
            )
        if i in by_id:
            raise LabelError(f"id2label has id {i} twice ({_shown(k)}): fix config.json")
        by_id[i] = v
    if sorted(by_id) != list(range(len(by_id))):
        found = sorted(by_id)
        shown = ", ".join(map(str, found[:10])) + (", ..." if len(found) > 10 else "")
        raise LabelError(
            f"id2label ids must be 0..{len(by_id) - 1}, found {shown}: fix config.json"
        )
    stored = _stored_count(config)
    if stored is not None and stored[1] != len(by_id):
        raise LabelError(
            f"the config has {len(by_id)} labels in id2label but {stored[0]} {stored[1]}: the "
            f"model is built with {stored[0]}; make them agree (set {stored[0]} to {len(by_id)} "
            "or name every label in id2label)"
        )
    return [by_id[i] for i in range(len(by_id))]


def _unnamed_labels(config: Any) -> list[str]:
    """Labels of a config with no ``id2label``: timm's ``label_names``, else ``LABEL_i``."""
    names = _field(config, NAMES_KEY)
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    stored = _stored_count(config)
    if stored is None or stored[1] < 1:
        raise LabelError(
            "the model config has no id2label and no label count (num_labels): "
            "it is not a classifier with labels"
        )
    return [f"LABEL_{i}" for i in range(stored[1])]


def label_maps(names: Sequence[str]) -> tuple[dict[int, str], dict[str, int]]:
    """Return ``(id2label, label2id)`` for the ordered ``names`` (int ids, as transformers keeps them)."""
    return dict(enumerate(names)), {n: i for i, n in enumerate(names)}


#: Unicode categories refused anywhere in a label name: control characters (newline, tab, NUL,
#: ...), line/paragraph separators and lone surrogates. They break config.json consumers, the
#: model card and terminal output, and are never what a user meant to type.
_BAD_CATEGORIES = ("Cc", "Zl", "Zp", "Cs")


def check_name(name: Any) -> str:
    """Return ``name`` if it is usable as a new label name; raise otherwise.

    A label name is a non-blank string with no whitespace around it (``" card_arrival "`` would
    sit beside ``card_arrival`` as a second label) and no control characters or line breaks.
    Names are compared exactly, so the rule refuses rather than silently strips.

    Raises:
        LabelError: naming the label (``repr``) and what is wrong with it.
    """
    if not isinstance(name, str):
        raise LabelError(f"label names must be strings, got {type(name).__name__} {_shown(name)}")
    if not name.strip():
        raise LabelError(
            f"a label name is empty ({_shown(name)}): give each label a non-blank name"
        )
    bad = next((c for c in name if unicodedata.category(c) in _BAD_CATEGORIES), None)
    if bad is not None:
        raise LabelError(
            f"label name {_shown(name)} contains the control character {bad!r}: "
            "label names must be printable on one line"
        )
    if name != name.strip():
        raise LabelError(
            f"label name {_shown(name)} has whitespace around it: remove it "
            f"({name.strip()[:80]!r}), or it would be a label of its own"
        )
    return name


def _shown(name: Any, limit: int = 80) -> str:
    """A name as a message shows it: as is when plain, else ``repr`` (shortened when long)."""
    if not isinstance(name, str):
        text = repr(name)
        return text if len(text) <= limit else text[:limit] + "..."
    plain = name == name.strip() and name.isprintable()
    if len(name) > limit:
        return repr(name[:limit]) + f"... ({len(name)} characters)"
    return name if plain and name else repr(name)


def check_new_names(existing: Sequence[str], names: Iterable[str]) -> list[str]:
    """Validate names to append: non-empty, unique, not already labels.

    Returns:
        the names as a list, in the given order.

    Raises:
        LabelError: naming the offending label(s).
    """
    new = [check_name(n) for n in names]
    if not new:
        raise LabelError("no label names given: pass at least one --name")
    dupes = sorted({n for n in new if new.count(n) > 1})
    if dupes:
        raise LabelError(f"label name(s) given more than once: {', '.join(map(_shown, dupes))}")
    clash = [n for n in new if n in set(existing)]
    if clash:
        raise LabelError(
            f"label(s) already in the model: {', '.join(map(_shown, clash))} "
            f"(the model has {len(existing)} labels; use rename-label to change a name)"
        )
    return new


def check_known(existing: Sequence[str], names: Iterable[str]) -> list[str]:
    """Validate that every name is a current label; return them as a list.

    Raises:
        LabelError: listing the unknown names and a few of the known ones.
    """
    names = list(names)
    for n in names:
        if not isinstance(n, str):
            raise LabelError(f"label names must be strings, got {type(n).__name__} {_shown(n)}")
    known = set(existing)
    unknown = [n for n in names if n not in known]
    if unknown:
        shown = ", ".join(map(_shown, existing[:10])) + (", ..." if len(existing) > 10 else "")
        near = next((n.strip() for n in unknown if n.strip() in known), None)
        hint = f"; did you mean {near!r} (no whitespace around it)?" if near else ""
        raise LabelError(
            f"unknown label(s): {', '.join(map(_shown, unknown))}{hint} (the model's labels: {shown})"
        )
    return names


def grown(existing: Sequence[str], names: Iterable[str], *, task: str | None = None) -> list[str]:
    """Return ``existing`` + validated new ``names`` (new ids follow the old ones in order).

    For a token classifier (``task`` ``"token-classification"``) a name may be an entity type:
    it stands for every tag of the model's scheme for it (:func:`.tasks.token.schemes.tags_to_add`).

    Raises:
        LabelError: empty, duplicate or existing names; an entity type the model has; an
        entity type on a token model whose labels follow no scheme.
    """
    names = list(names)
    if task == TOKEN:
        names = schemes.tags_to_add(existing, [check_name(n) for n in names])
    return list(existing) + check_new_names(existing, names)


def without(
    existing: Sequence[str],
    names: Iterable[str],
    *,
    task: str | None = None,
    force: bool = False,
) -> tuple[list[str], list[int]]:
    """Drop ``names``; return the dense remaining label list and the kept old ids (in order).

    For a token classifier an entity type stands for all its tags (:func:`.tasks.token.schemes.tags_to_remove`),
    and tags whose removal breaks the model's tagging scheme (``O``, ``B-X`` without ``I-X``)
    are refused unless ``force`` (:func:`.tasks.token.schemes.check_removal`).

    Raises:
        LabelError: unknown names, duplicates, removing every label, or breaking the scheme.
    """
    if task == TOKEN:
        names = schemes.tags_to_remove(existing, list(names))
    drop = check_known(existing, names)
    if len(set(drop)) != len(drop):
        raise LabelError(f"label name(s) given more than once: {', '.join(sorted(set(drop)))}")
    kept = [i for i, n in enumerate(existing) if n not in set(drop)]
    if len(kept) < 1:
        raise LabelError("cannot remove every label: a classifier needs at least one")
    if task == TOKEN:
        schemes.check_removal(existing, drop, force=force)
    return [existing[i] for i in kept], kept


def renamed(existing: Sequence[str], old: str, new: str, *, task: str | None = None) -> list[str]:
    """Return the label list with ``old`` renamed to ``new`` (ids unchanged).

    For a token classifier, ``old`` may be an entity type: every tag of it is renamed
    (``B-PER`` → ``B-PERSON``; :func:`.tasks.token.schemes.renamed_type`).

    Raises:
        LabelError: ``old`` unknown, ``new`` the same as ``old``, not a usable name, or already
        a label (or entity type).
    """
    if task == TOKEN and isinstance(old, str) and old not in existing:
        after = schemes.renamed_type(existing, old, check_name(new))
        if after is not None:
            return after
    check_known(existing, [old])
    check_name(new)
    if new == old:
        raise LabelError(
            f"OLD and NEW are the same ({_shown(old)}): nothing to do; give NEW a different name"
        )
    if new in set(existing):
        raise LabelError(
            f"{_shown(new)} is already a label (the model has {len(existing)} labels): choose "
            f"another NEW name, or remove-label {_shown(new)} first"
        )
    return [new if n == old else n for n in existing]


def apply_to_config(config: Any, names: Sequence[str]) -> None:
    """Set ``id2label``/``label2id`` (and a stored ``num_labels``) of ``config`` to ``names``.

    Works on a ``config.json`` dict (string ids, as JSON has them) and on a ``PretrainedConfig``.
    """
    id2label, label2id = label_maps(names)
    if isinstance(config, dict):
        config["id2label"] = {str(i): n for i, n in id2label.items()}
        config["label2id"] = label2id
        for key in COUNT_KEYS:  # a count stored apart from id2label (PVT, timm) follows
            if key in config:
                config[key] = len(names)
        if NAMES_KEY in config:  # timm's wrapper reads its names from here, not id2label
            config[NAMES_KEY] = list(names)
        return
    config.id2label = id2label
    config.label2id = label2id
    # For most configs num_labels is derived from id2label and this is a no-op; a few store it
    # as a plain field. The setter only renames labels when the count differs, which it no
    # longer does here.
    if getattr(config, "num_labels", None) != len(names):
        config.num_labels = len(names)
