"""The provenance record ``headsurgeon.json`` kept beside a model headsurgeon changed.

``add-label``, ``remove-label``, ``rename-label``, ``train`` and ``check`` append an event to it;
``push`` reads it to write the model card and to refuse a model whose recorded gate failed.
Pure JSON, no torch. Shape::

    {
      "format": 1,
      "parent": "path/or/hub-id of the model before headsurgeon's first change",
      "parent_labels": ["..."],            # labels of that parent
      "base_model": "org/name",            # optional: the parent's Hub id (--base-model)
      "events": [
        {"op": "add-label", "time": "...", "version": "0.1.0", "labels": ["new"], "init": "mean", ...},
        {"op": "train", ...},
        {"op": "check", "passed": true, "report": {...}},
      ]
    }
"""

from __future__ import annotations

import datetime as _dt
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


def new_record(parent: str, parent_labels: list[str]) -> dict[str, Any]:
    """Start a record for a model derived from ``parent`` (its labels given)."""
    return {"format": FORMAT, "parent": parent, "parent_labels": list(parent_labels), "events": []}


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
            json.dump(record, fh, indent=2, sort_keys=False)
            fh.write("\n")
        if (folder / "config.json").is_file():
            shutil.copymode(folder / "config.json", tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _remove_stale_temps(folder: Path) -> None:
    """Delete ``.headsurgeon.json.PID.tmp`` files whose writer is dead (a killed ``check``)."""
    from .atomic import pid_alive

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
