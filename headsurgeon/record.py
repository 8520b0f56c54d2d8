"""The provenance record ``headsurgeon.json`` kept beside a model headsurgeon changed.

``add-label``, ``remove-label``, ``rename-label``, ``train`` and ``check`` append an event to it;
``push`` reads it to write the model card and to refuse a model whose recorded gate failed.
Pure JSON, no torch. Shape::

    {
      "format": 1,
      "parent": "org/name or folder name of the model before headsurgeon's first change",
      "parent_labels": ["..."],            # labels of that parent
      "base_model": "org/name",            # optional: the parent's Hub id (--base-model)
      "events": [
        {"op": "add-label", "time": "...", "version": "0.1.0", "labels": ["new"], "init": "mean", ...},
        {"op": "train", "data": {"name": "new.csv", "sha256": "...", "examples": 80}, ...},
        {"op": "check", "parent": "...", "holdout": {...}, "passed": true, "report": {...}},
      ]
    }

The record travels with the model (``push`` uploads it), so it never holds a local path: the
parent is a Hub id or a folder's base name (:func:`parent_ref`), a data file its base name, hash
and count (:func:`file_ref`). Records of older versions held absolute paths;
:func:`public_record` gives the copy ``push`` uploads, with those reduced to base names.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .errors import CheckpointError, OptionsError

RECORD_NAME = "headsurgeon.json"
FORMAT = 1
#: a Hub model id ``namespace/name``: ASCII letters, digits, ``-_.``, no ``--``/``..``, <= 96 each
_HUB_ID = re.compile(
    r"(?!.*(--|\.\.))[A-Za-z0-9]([\w.-]{0,94}[A-Za-z0-9])?/[\w.-]{1,96}(?<!\.git)", re.A
)
#: a Hub cache snapshot folder: ``.../models--org--name/snapshots/<sha>``
_CACHE_SNAPSHOT = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\]")
#: event fields that name a model folder or a data file (kept as a Hub id or a base name)
PATH_FIELDS = frozenset({"parent", "data", "replay", "holdout", "output", "source", "plot"})
_MODEL_FIELDS = frozenset({"parent", "source"})  # may name a Hub model rather than a folder


def read_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """Return the record of ``folder``, or ``None`` when it has none.

    Raises:
        CheckpointError: the file exists but is not a valid record.
    """
    path = Path(folder) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())
        raise CheckpointError(f"{path} is not readable JSON ({why}); delete or fix it") from e
    if not isinstance(record, dict) or not isinstance(record.get("events"), list):
        raise CheckpointError(f"{path} is not a headsurgeon record (no 'events' list)")
    if not all(isinstance(event, dict) for event in record["events"]):
        raise CheckpointError(f"{path} is not a headsurgeon record (an event is not an object)")
    labels = record.get("parent_labels", [])
    if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels):
        raise CheckpointError(f"{path} is not a headsurgeon record (parent_labels is not a list)")
    return record


def new_record(parent: str | os.PathLike, parent_labels: list[str]) -> dict[str, Any]:
    """Start a record for a model derived from ``parent`` (its labels given); the parent is
    kept as :func:`parent_ref` names it (a Hub id or a folder name, never a local path)."""
    return {
        "format": FORMAT,
        "parent": parent_ref(parent),
        "parent_labels": list(parent_labels),
        "events": [],
    }


def add_event(record: dict[str, Any], op: str, **fields: Any) -> dict[str, Any]:
    """Append an event (``op`` plus JSON-able ``fields``) stamped with time and version."""
    from . import __version__

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record["events"].append({"op": op, "time": now, "version": __version__, **fields})
    return record


def last_check(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return the newest ``check`` event (or a ``train`` event carrying one), if any."""
    for event in reversed((record or {}).get("events", [])):
        if event.get("op") == "check" or "check" in event:
            return event if event.get("op") == "check" else event["check"]
    return None


def is_hub_id(text: str) -> bool:
    """Whether ``text`` is a plausible Hub model id (``namespace/name``)."""
    return isinstance(text, str) and _HUB_ID.fullmatch(text) is not None and text[-1] not in ".-"


def hub_id_of(parent: str | None) -> str | None:
    """Return the Hub id a recorded parent names, or ``None`` for a local folder.

    A Hub cache snapshot path (``.../models--org--name/snapshots/<sha>``) gives ``org/name``;
    ``org/name`` that is not an existing local path is taken as a Hub id.
    """
    if not isinstance(parent, str) or not parent:
        return None
    cached = _CACHE_SNAPSHOT.search(parent)
    if cached:
        return f"{cached.group(1)}/{cached.group(2)}"
    local = parent.startswith((".", "/", "~")) or os.path.exists(parent)
    return parent if is_hub_id(parent) and not local else None


def base_name(path: str | os.PathLike) -> str:
    """The last part of a POSIX or Windows path (whichever system wrote it); ``local`` for a
    path with no name of its own (``/``, ``.``, ``..``)."""
    name = re.split(r"[\\/]", os.fspath(path).rstrip("/\\"))[-1]
    return name if name not in ("", ".", "..") else "local"


def parent_ref(source: str | os.PathLike) -> str:
    """What a record keeps of the model folder ``source``: its Hub id when it names one
    (:func:`hub_id_of`), else the folder's base name, never a local path.

    Example:
        >>> parent_ref("/home/me/models/minilm-banking77-old50")
        'minilm-banking77-old50'
    """
    text = os.fspath(source)
    return hub_id_of(text) or base_name(os.path.abspath(text) if text else text)


def file_ref(path: str | os.PathLike | None, examples: int | None = None) -> dict[str, Any] | None:
    """What a record keeps of a data file: its base name, the sha256 of its bytes and how many
    examples (sentences for token data) were read from it; ``None`` for no file.

    Example:
        >>> file_ref("/home/me/data/new.csv", 80)
        {'name': 'new.csv', 'sha256': '9f2c...', 'examples': 80}
    """
    if path is None:
        return None
    ref: dict[str, Any] = {"name": base_name(path)}
    if Path(path).is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        ref["sha256"] = digest.hexdigest()
    if examples is not None:
        ref["examples"] = int(examples)
    return ref


def public_record(record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``record`` fit to publish, and where it differs: the path fields
    (:data:`PATH_FIELDS`) of the record, of each event and of an event's ``check`` reduced to a
    Hub id or a base name. Only those places: label names (keys and values elsewhere, e.g. a
    rename ``{"data": "card/lost"}``) are never touched. Records of older versions held
    absolute local paths there; a current record comes back unchanged (``[]``).

    Returns:
        ``(copy, places)``, places like ``parent`` or ``events[1].data``.
    """
    copy = json.loads(json.dumps(record))
    places = _strip_paths(copy, "")
    for i, event in enumerate(copy.get("events") or []):
        places += _strip_paths(event, f"events[{i}]")
        places += _strip_paths(event.get("check"), f"events[{i}].check")
    return copy, places


def _strip_paths(node: Any, at: str) -> list[str]:
    """Reduce the path fields of the dict ``node`` in place; return the places changed."""
    if not isinstance(node, dict):
        return []
    places = []
    for key, value in node.items():
        public = _public_value(key, value)
        if public is not None and public != value:
            node[key] = public
            places.append(f"{at}.{key}" if at else key)
    return places


def _public_value(key: str, value: Any) -> Any:
    """The public form of a path field (``None``: not a path field): a model field keeps a Hub
    id, anything else becomes its base name; a :func:`file_ref` keeps its base name."""
    if key not in PATH_FIELDS:
        return None
    if isinstance(value, str):
        return (key in _MODEL_FIELDS and hub_id_of(value)) or base_name(value)
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return {**value, "name": base_name(value["name"])}
    return None


def dumps(record: dict[str, Any]) -> str:
    """The text of ``headsurgeon.json`` for ``record`` (as :func:`write_record` writes it)."""
    return json.dumps(record, indent=2, sort_keys=False) + "\n"


def set_base_model(record: dict[str, Any], base_model: str | None) -> dict[str, Any]:
    """Record the Hub id of the model ``record``'s parent came from (``None``: leave as is).

    Raises:
        OptionsError: ``base_model`` is not a plausible Hub model id.
    """
    if base_model is None:
        return record
    if not is_hub_id(base_model):
        raise OptionsError(
            f"--base-model {base_model!r} is not a Hub model id: expected ORG/NAME "
            "(ASCII letters, digits, '-', '_', '.'), e.g. sentence-transformers/all-MiniLM-L6-v2"
        )
    record["base_model"] = base_model
    return record


def write_record(folder: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` into ``folder`` atomically (temp file beside it, then ``os.replace``).

    The file gets the mode of the folder's ``config.json`` (else the umask's default, like any
    new file). Temp files that killed runs left in ``folder`` are deleted.
    """
    folder = Path(folder)
    path = folder / RECORD_NAME
    _remove_stale_temps(folder)
    tmp = folder / f".{RECORD_NAME}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # umask applies
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumps(record))
        if (folder / "config.json").is_file():
            shutil.copymode(folder / "config.json", tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _remove_stale_temps(folder: Path) -> None:
    """Delete ``.headsurgeon.json.PID.tmp`` files whose writer is dead (a killed ``check``)."""
    from .process import pid_alive

    for tmp in folder.glob(f".{RECORD_NAME}.*.tmp"):
        pid = tmp.name[len(RECORD_NAME) + 2 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def record_for(source: str | os.PathLike, parent_labels: list[str]) -> dict[str, Any]:
    """Return the record to extend for a model read from ``source``.

    The source's own record when it has one (so the parent stays the original model), else a
    new record whose parent is ``source``.
    """
    return read_record(source) or new_record(str(source), parent_labels)


def old_labels(record: dict[str, Any], labels: list[str]) -> list[str]:
    """The model's old labels: the record's ``parent_labels`` it still has, else (no parent
    label left, or none recorded) every label of ``labels``."""
    return [n for n in record["parent_labels"] if n in labels] or labels


def trained_labels(record: dict[str, Any]) -> list[str]:
    """The labels the record's earlier ``train`` events trained."""
    return [
        n
        for event in record["events"]
        if event.get("op") == "train"
        for n in event.get("trained_labels", [])
    ]


def follow_labels(record: dict[str, Any], before: list[str], after: list[str]) -> None:
    """Keep ``record["parent_labels"]`` naming the model's labels after a rename or a removal
    (``before``/``after``: the labels by id around it), so ``train`` and ``check`` still take
    a renamed label as old, and a removed one as gone, not as new. Same length: a rename, by
    id; otherwise the labels that are left."""
    parents = record.get("parent_labels")
    if not isinstance(parents, list):
        return
    if len(before) == len(after):
        renamed = dict(zip(before, after, strict=True))
        record["parent_labels"] = [renamed.get(n, n) for n in parents]
    else:
        record["parent_labels"] = [n for n in parents if n in set(after)]
