"""The model card (``README.md``) ``push`` uploads: Hub YAML metadata plus what headsurgeon did.

Built only from the model folder (``config.json`` and the ``headsurgeon.json`` record), so the
same folder always gives the same card: pushing it twice changes nothing. No torch, no
transformers. Events this version does not know are listed generically, never dropped.

Label names and other recorded text are escaped: only fixed keys and a validated Hub id reach
the YAML header; in the Markdown a name is a code span when that is safe, else ``<code>`` with
every special character as an HTML entity, so no name can end a table cell or row, start a
block, open emphasis or HTML. Control and invisible characters are shown as ``\\uXXXX``.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import labels as _labels
from . import record as _record
from .models import read_config
from .record import PATH_FIELDS, base_name, hub_id_of
from .tasks import AUDIO_MODEL_TYPES, MULTI_LABEL
from .uncertainty import describe_drop

#: architecture class suffix → Hub pipeline tag
PIPELINE_TAGS = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForImageClassification", "image-classification"),
    ("ForImageClassificationWithTeacher", "image-classification"),
    ("ForAudioClassification", "audio-classification"),
)
LIBRARY_NAME = "transformers"
CARD_TAGS = ("headsurgeon",)
#: a label table longer than this is folded into a <details> block
FOLD_LABELS_OVER = 20
_SKIP_FIELDS = {"op", "time", "version", "check", "report", "head", "labels_before", "labels_after"}
_SKIP_FIELDS |= {"passed", "max_drop", "max_label_drop"}  # shown in the verdict


@dataclass
class LabelChanges:
    """How the label set changed from the parent to this model.

    Attributes:
        before: the parent's labels (``None`` when no record says what they were).
        after: this model's labels, by id.
        added: labels that come from no parent label.
        removed: parent labels that are gone.
        renamed: ``(parent name, new name)`` pairs.
    """

    before: list[str] | None
    after: list[str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)


#: the Hub pipeline tag of a speech model's ``...ForSequenceClassification`` (wav2vec2, HuBERT...)
SPEECH_TAG = "audio-classification"


def pipeline_tag(architecture: str | None, model_type: str | None = None) -> str | None:
    """Return the Hub pipeline tag of a transformers class name (and the config's
    ``model_type``: a speech model's sequence classifier classifies audio), or ``None`` if not
    a classifier."""
    speech = model_type in AUDIO_MODEL_TYPES
    if speech and architecture and architecture.endswith("ForSequenceClassification"):
        return SPEECH_TAG
    for suffix, tag in PIPELINE_TAGS:
        if architecture and architecture.endswith(suffix):
            return tag
    return None


def label_changes(record: dict[str, Any] | None, labels_after: list[str]) -> LabelChanges:
    """Follow the record's events from the parent's labels to ``labels_after``.

    Renames are known from rename events (``renamed`` mapping, ``old``/``new`` fields) or from
    an event whose ``labels_before``/``labels_after`` have the same length and differ by position.
    """
    if not record or record.get("parent_labels") is None:
        return LabelChanges(None, list(labels_after))
    before = [str(n) for n in record["parent_labels"]]
    origin: dict[str, str | None] = {n: n for n in before}  # current name → parent name
    for event in record.get("events", []):
        for old, new in _renames(event):
            origin[new] = origin.pop(old, old)
        for name in event.get("removed") or []:
            origin.pop(name, None)
        for name in _added(event):
            origin[name] = None
    kept = {origin.get(n) for n in labels_after}
    return LabelChanges(
        before=before,
        after=list(labels_after),
        added=[n for n in labels_after if origin.get(n) is None],
        removed=[n for n in before if n not in kept],
        renamed=[(origin[n], n) for n in labels_after if origin.get(n) not in (None, n)],
    )


def _renames(event: dict[str, Any]) -> list[tuple[str, str]]:
    if isinstance(event.get("renamed"), dict):
        return [(str(k), str(v)) for k, v in event["renamed"].items()]
    if isinstance(event.get("old"), str) and isinstance(event.get("new"), str):
        return [(event["old"], event["new"])]
    a, b = event.get("labels_before"), event.get("labels_after")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        if not event.get("added") and not event.get("removed"):
            return [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    return []


def build_card(
    folder: str | os.PathLike, repo_id: str | None = None, *, base_model: str | None = None
) -> str:
    """Return the ``README.md`` model card for the model saved in ``folder``.

    Args:
        folder: a saved classifier (``config.json`` with ``id2label``), ideally with the
            ``headsurgeon.json`` record that ``add-label``/``train``/``check`` write.
        repo_id: the Hub repository it goes to (used in the title and usage example).
        base_model: the parent's Hub id; default: ``base_model`` in ``headsurgeon.json``, else
            the recorded parent when it is a Hub id.

    Returns:
        Markdown with a YAML header: ``library_name``, ``pipeline_tag``, ``base_model`` (the
        parent, when it is a Hub id), ``tags``; a body with the labels before and after, each
        recorded operation and the last old-label check.

    Raises:
        CheckpointError: no readable ``config.json`` or an unreadable record.
        LabelError: the config has no usable ``id2label``.
    """
    config = read_config(folder)
    labels_after = _labels.labels_of(config)
    record = _record.read_record(folder)
    architecture = (config.get("architectures") or [None])[0]
    tag = pipeline_tag(architecture, config.get("model_type"))
    recorded = (record or {}).get("base_model")
    base = base_model or (recorded if _record.is_hub_id(recorded) else None)
    base = base or hub_id_of((record or {}).get("parent"))
    changes = label_changes(record, labels_after)
    check = _record.last_check(record)
    title = repo_id.split("/")[-1] if repo_id else Path(folder).resolve().name
    parts = [
        _front_matter(tag, base),
        f"# {_plain(title)}\n",
        _summary(architecture, record, base, changes, check),
        _labels_section(changes),
        _events_section(record),
        _check_section(check),
        _usage_section(tag, repo_id, every_label=config.get("problem_type") == MULTI_LABEL),
    ]
    return "\n".join(p for p in parts if p)


def _front_matter(tag: str | None, base: str | None) -> str:
    lines = ["---", f"library_name: {LIBRARY_NAME}"]
    if tag:
        lines.append(f"pipeline_tag: {tag}")
    if base:
        lines += [f"base_model: {json.dumps(base)}", "base_model_relation: finetune"]
    lines.append("tags:")
    lines += [f"- {t}" for t in (*CARD_TAGS, *([tag] if tag else []))]
    return "\n".join([*lines, "---", ""])


def _summary(architecture, record, base, changes: LabelChanges, check) -> str:
    text = f"A {_code(str(architecture or 'transformers'))} classifier with {len(changes.after)} labels."
    if record:
        local = base_name(str(record.get("parent") or "?"))  # no local paths in a public card
        parent = (
            f"[{base}](https://huggingface.co/{base})"
            if base
            else f"the local model {_code(local)}"
        )
        text += (
            f" It was derived from {parent} with headsurgeon; label names are kept in "
            "`id2label`/`label2id` and every step is listed under *How it was made*."
        )
    if check is not None and check.get("passed") is False:
        why = check_failure(check)
        name = check_name(check)
        text += (
            f"\n\n> **Warning:** the last {name} recorded for this model **failed**"
            f"{f' ({_plain(why)})' if why else ''}; it was published anyway (`--force`). "
            f"See *{name.capitalize()}* below."
        )
    return text + "\n"


def _labels_section(changes: LabelChanges) -> str:
    out = ["## Labels\n"]
    if changes.before is not None:
        out.append(f"{len(changes.before)} labels before, {len(changes.after)} after.\n")
        out.append(f"- Added: {_names(changes.added)}")
        out.append(f"- Removed: {_names(changes.removed)}")
        renamed = ", ".join(f"{_code(a)} → {_code(b)}" for a, b in changes.renamed)
        out.append(f"- Renamed: {renamed or 'none'}\n")
    status = {n: "added" for n in changes.added}
    status |= {new: f"renamed from {_code(old)}" for old, new in changes.renamed}
    table = ["| id | label | |", "|---:|---|---|"]
    table += [f"| {i} | {_code(n)} | {status.get(n, '')} |" for i, n in enumerate(changes.after)]
    out += _fold(table, "All labels")
    return "\n".join(out) + "\n"


def _events_section(record: dict[str, Any] | None) -> str:
    events = (record or {}).get("events") or []
    if not events:
        return ""
    out = ["## How it was made\n"]
    for i, event in enumerate(events, 1):
        stamp = ", ".join(_plain(event[k]) for k in ("time", "version") if event.get(k))
        out.append(f"{i}. {_event_text(event)}" + (f" ({stamp})" if stamp else ""))
    return "\n".join(out) + "\n"


def report_of(check: dict[str, Any]) -> dict[str, Any]:
    """The measures of a check: its ``report`` (``check`` events) or the check itself (``train``
    events store the report's fields flat beside ``passed``)."""
    report = check.get("report")
    return report if isinstance(report, dict) else check


def gate_of(check: dict[str, Any]) -> type:
    """The gate report class whose dicts look like the recorded ``check``
    (:func:`headsurgeon.tasks.report_type`: its ``kind``; a label check's dict has none): how
    the card names the check and its measures (:class:`~headsurgeon.tasks.base.GateReport`)."""
    from .tasks import report_type

    return report_type({**check, **report_of(check)})


def check_name(check: dict[str, Any]) -> str:
    """The recorded check's name: ``old-label check``, ``old-type check`` (an entity check)..."""
    return gate_of(check).NAME


def check_failure(check: dict[str, Any]) -> str | None:
    """Why a recorded check failed, in its gate's words (``None``: no reason recorded). A
    ``check`` event keeps its tolerances beside its ``report``."""
    merged = {**check, **report_of(check)}
    return gate_of(merged).failure_of(merged)


def _added(event: dict[str, Any]) -> list[str]:
    names = event.get("added")
    if not names and event.get("op") == "add-label":
        names = event.get("labels")  # `train --add` records the new names as "labels"
    return [str(n) for n in names or []]


def _event_text(event: dict[str, Any]) -> str:
    op = str(event.get("op", "?"))
    head = event.get("head") or {}
    where = f" in head {_names(head.get('paths') or [])}" if head.get("paths") else ""
    if op == "add-label":
        text = f"**add-label**: added {_names(_added(event))}{where}"
        text += f"; new rows initialised with `{event.get('init')}`"
        text += f", new biases `{event.get('bias')}`" if event.get("bias") else ""
        return text + (f" (by `{event['by']}`)" if event.get("by") else "")
    if op == "remove-label":
        return f"**remove-label**: removed {_names(event.get('removed') or [])}{where}"
    if op == "rename-label" and _renames(event):
        return "**rename-label**: " + ", ".join(
            f"{_code(a)} → {_code(b)}" for a, b in _renames(event)
        )
    if op == "check":
        return f"**check**: {_verdict(event)}{_fields(event, lead='; ')}"
    text = f"**{_plain(op)}**: {_fields(event) or 'no details recorded'}"
    if isinstance(event.get("check"), dict):
        text += f"; {check_name(event['check'])} {_verdict(event['check'])}"
    return text


def _fields(event: dict[str, Any], lead: str = "") -> str:
    """Scalar fields as ``key `value` ``; one level of dicts (e.g. training options) flattened;
    short lists of names kept; paths reduced to their file name (no local paths in a card)."""
    items = []
    for key, value in event.items():
        if key in _SKIP_FIELDS or value is None:
            continue
        if key in PATH_FIELDS and isinstance(value, dict) and "name" in value:
            items.append(f"{_plain(key)} {_file_text(value)}")
        elif isinstance(value, dict):
            items += [f"{_plain(k)} {_code(_fmt(v))}" for k, v in value.items() if _scalar(v)]
        elif isinstance(value, list):
            if value and len(value) <= FOLD_LABELS_OVER and all(_scalar(v) for v in value):
                items.append(f"{_plain(key)} {_names([str(v) for v in value])}")
        else:
            shown = base_name(value) if key in PATH_FIELDS and isinstance(value, str) else value
            items.append(f"{_plain(key)} {_code(_fmt(shown))}")
    return lead + ", ".join(items) if items else ""


def _file_text(ref: dict[str, Any]) -> str:
    """A recorded data file (:func:`~headsurgeon.record.file_ref`): its base name, how many
    examples were read from it and the start of its sha256."""
    count = ref.get("examples")
    facts = [f"{_plain(count)} examples"] if isinstance(count, int) else []
    if isinstance(ref.get("sha256"), str):
        facts.append(f"sha256 {_code(ref['sha256'][:12])}")
    text = _code(base_name(str(ref["name"])))
    return text + (f" ({', '.join(facts)})" if facts else "")


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _verdict(check: dict[str, Any]) -> str:
    report = report_of(check)
    verdict = {True: "passed", False: "**failed**"}.get(check.get("passed"), "ran")
    facts = [
        f"{label} {_plain(report[key])}"
        for key, label in (*gate_of(check).MEASURES, ("drop_pts", "drop (pts)"))
        if key in report
    ]
    max_drop = check.get("max_drop", report.get("max_drop"))
    if max_drop is not None:
        facts.append(f"allowed {_plain(max_drop)}")
    max_label_drop = check.get("max_label_drop", report.get("max_label_drop"))
    if max_label_drop is not None:
        facts.append(f"allowed per label {_plain(max_label_drop)}")
    if report.get("labels_beyond"):
        facts.append(f"labels beyond: {_names([str(n) for n in report['labels_beyond']])}")
    noise = report.get("drop_uncertainty")  # the drop's 95 % interval: noise or regression
    noise = describe_drop(noise) if isinstance(noise, dict) else None
    if noise:
        facts.append(noise)  # our own words and numbers: nothing to escape
    return verdict + (f" ({', '.join(facts)})" if facts else "")


def _check_section(check: dict[str, Any] | None) -> str:
    if check is None:
        return ""
    report = report_of(check)
    gate = gate_of(check)
    out = [f"## {gate.NAME.capitalize()}\n", f"Result: {_verdict(check)}.\n"]
    if gate.ABOUT:
        out.append(f"{gate.ABOUT}\n")
    rows = [(k, v) for k, v in report.items() if _scalar(v) and v is not None]
    if rows:
        out += ["| measure | value |", "|---|---|"]
        out += [f"| {_plain(k)} | {_plain(v)} |" for k, v in rows]
        out.append("")
    per_label = report.get("per_label")
    if isinstance(per_label, list) and per_label and all(isinstance(r, dict) for r in per_label):
        rows = [_named_row(r, gate.COLUMNS) for r in per_label]
        out += [f"### Per {gate.ROW}\n", *_fold(_table(rows), f"Every {gate.ROW}"), ""]
    for key in ("new_label_metrics", "new_labels"):
        new = report.get(key)
        if isinstance(new, dict) and new:
            rows = [
                {"label": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in new.items()
            ]
            out += [f"### New {gate.NEW}\n", *_table(rows), ""]
            break
    thresholds = report.get("thresholds")  # a gate that decides each label at its threshold
    if isinstance(thresholds, dict) and thresholds:
        out += [
            "### Decision thresholds\n",
            "Each label fires when its sigmoid reaches its threshold (`config.json` "
            "`label_thresholds`; 0.5 when unset). New labels' biases were calibrated so that "
            "0.5 is their threshold.\n",
            *_fold(_table([{"label": k, "threshold": v} for k, v in thresholds.items()]),
                   "Every label"),
            "",
        ]  # fmt: skip
    return "\n".join(out)


def _named_row(row: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """A per-label row with the gate's readable column names (``columns``; keys it does not
    name kept as are)."""
    if not columns:
        return row
    named = {columns[k]: row[k] for k in columns if k in row}
    return named | {k: v for k, v in row.items() if k not in columns}


def _fold(lines: list[str], summary: str) -> list[str]:
    """Fold a long table into a <details> block."""
    if len(lines) - 2 <= FOLD_LABELS_OVER:
        return lines
    return [f"<details><summary>{summary}</summary>\n", *lines, "\n</details>"]


def _usage_section(tag: str | None, repo_id: str | None, every_label: bool = False) -> str:
    """How to run the model with transformers' pipeline (``every_label``: a multi-label
    model, whose every label's score is wanted: each fires at its threshold)."""
    if not (tag and repo_id):
        return ""
    extra = ", top_k=None" if every_label else ""
    note = (
        "\nEach label fires when its score reaches its threshold (see Decision thresholds).\n"
        if every_label
        else ""
    )
    return (
        "## Usage\n\n```python\nfrom transformers import pipeline\n\n"
        f'classifier = pipeline("{tag}", model="{repo_id}"{extra})\n```\n{note}'
    )


def _table(rows: list[dict[str, Any]]) -> list[str]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(map(_plain, keys)) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(_plain(r.get(k, "")) for k in keys) + " |")
    return lines


#: text that reads the same as Markdown and as plain text (numbers, simple names)
_SAFE_TEXT = re.compile(r"-?[A-Za-z0-9]+(?:[._:/+ -]+[A-Za-z0-9]+)*", re.ASCII)
#: characters a backtick code span cannot hold inside a table cell or a list item
_NOT_IN_SPAN = frozenset("`|\\<>&")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> str:
    """``value`` as inline Markdown text (a table cell or prose), every special char escaped."""
    text = _fmt(value)
    return text if _SAFE_TEXT.fullmatch(text) else _escape(text)


def _code(name: str) -> str:
    """``name`` as inline code: a backtick span when safe, else ``<code>`` with entities."""
    if name and name == name.strip(" ") and all(_spannable(c) for c in name):
        return f"`{name}`"
    return f"<code>{_escape(name)}</code>"


def _spannable(char: str) -> bool:
    return char == " " or (char not in _NOT_IN_SPAN and _visible(char) and not char.isspace())


def _visible(char: str) -> bool:
    """Not a control, format, surrogate, private or unassigned character, nor a line break."""
    category = unicodedata.category(char)
    return category[0] != "C" and category not in ("Zl", "Zp")


def _escape(text: str) -> str:
    """Letters, digits and spaces as they are; ASCII punctuation as HTML entities; invisible
    characters as a visible ``\\uXXXX`` (no character can end a cell or a line)."""
    out = []
    for char in text:
        if not _visible(char):
            code = ord(char)
            out.append(f"&#92;u{code:04x}" if code <= 0xFFFF else f"&#92;U{code:08x}")
        elif char == " " or char.isalnum():
            out.append(char)
        elif char.isascii() or char.isspace():
            out.append(f"&#{ord(char)};")
        else:
            out.append(char)  # other printable non-ASCII symbols have no Markdown meaning
    return "".join(out)


def _names(names: list[str]) -> str:
    return ", ".join(_code(str(n)) for n in names) or "none"
