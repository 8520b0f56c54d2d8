"""``train``: teach the new labels without forgetting the old ones, behind the old-label check."""

from __future__ import annotations

import dataclasses
import logging

import click

from ..data import LABEL_COLUMN, TEXT_COLUMN
from ..train import options as _topt  # no torch: options only
from .app import (
    allow_pickle_option,
    api_keywords,
    audio_column_option,
    base_model_option,
    emit,
    head_path_option,
    image_column_option,
    json_option,
    label_sep_option,
    main,
    max_drop_option,
    max_label_drop_option,
    problem_type_option,
    progress_shown,
    trust_remote_code_option,
)


class _Calibrate(click.ParamType):
    """``gate`` or a number of points."""

    name = "gate|PTS"

    def convert(self, value, param, ctx):
        if value is None or value == "gate" or isinstance(value, float):
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"expected 'gate' or a number of points, got {value!r}", param, ctx)


#: click types of the options whose dataclass type does not say it (``None`` defaults, choices)
_TYPES = {
    "freeze": click.Choice(_topt.FREEZE_CHOICES),
    "init": click.Choice(_topt.INIT_CHOICES),
    "device": click.Choice(_topt.DEVICE_CHOICES),
    "annotated": click.Choice(_topt.ANNOTATED_CHOICES),
    "calibrate": _Calibrate(),
    "calibrate_precision": float,
    "calibrate_label_cap": float,
}
_METAVARS = {"calibrate_label_cap": "PCT"}


def _annotated_type(f: dataclasses.Field):
    """``int``/``float``/``str`` from the field's annotation (``"float | None"`` is a float)."""
    first = str(f.type).split("|")[0].strip()
    return {"int": int, "float": float, "str": str, "bool": bool}.get(first, type(f.default))


def _option(f: dataclasses.Field):
    """A click option for one :class:`TrainOptions` field: its name, default and help."""
    flag = "--" + f.name.replace("_", "-")
    kwargs = {"default": f.default, "help": _topt.HELP.get(f.name)}
    if isinstance(f.default, bool):
        return click.option(f"{flag}/--no-{flag[2:]}", f.name, show_default=True, **kwargs)
    kwargs["type"] = _TYPES.get(f.name) or _annotated_type(f)
    kwargs["show_default"] = f.default is not None
    if f.name in _METAVARS:
        kwargs["metavar"] = _METAVARS[f.name]
    return click.option(flag, f.name, **kwargs)


def train_options(command=None, *, exclude: tuple[str, ...] = ()):
    """Decorate ``command`` with one option per :class:`TrainOptions` field (``progress``
    follows ``--quiet``/``--json``: :func:`~.app.progress_shown`), in the dataclass's order,
    plus ``--no-calibrate``; the fields in ``exclude`` get no option (a command that sets them
    itself: ``train_options(exclude=...)``). Build the options from the values with
    :func:`options_from`."""
    if command is None:
        return lambda command: train_options(command, exclude=exclude)
    command = click.option(
        "--no-calibrate", is_flag=True, help="Keep the trained biases (no --calibrate)."
    )(command)
    for f in reversed(dataclasses.fields(_topt.TrainOptions)):
        if f.name != "progress" and f.name not in exclude:
            command = _option(f)(command)
    return command


def options_from(opts: dict, as_json: bool):
    """The :class:`TrainOptions` of the values of :func:`train_options` (popped from ``opts``)."""
    from ..train import TrainOptions

    names = {f.name for f in dataclasses.fields(_topt.TrainOptions)}
    values = {k: opts.pop(k) for k in list(opts) if k in names}
    if opts.pop("no_calibrate"):
        values["calibrate"] = None
    if "calibrate_precision" in values and not values["calibrate_precision"]:
        values["calibrate_precision"] = None
    return TrainOptions(**values, progress=progress_shown(as_json))


@main.command()
@click.argument("model", type=click.Path(file_okay=False))
@click.option(
    "--data",
    required=True,
    type=click.Path(),
    help="Training file (.csv/.tsv/.jsonl) with the new labels' examples; for token classifiers "
    "CoNLL (.conll/.txt/.tsv/.iob/.bio) or JSONL (tokens+tags, or text+entities); for image "
    "and audio classifiers a folder DIR/<label>/<file> (or with a metadata.csv) or a "
    ".csv/.tsv/.jsonl of file paths.",
)
@click.option(
    "--replay",
    type=click.Path(),
    help="Old labels' examples to replay (e.g. the parent's training data), as --data.",
)
@click.option(
    "--holdout",
    type=click.Path(),
    help="Held-out examples, as --data: the old-label check runs on them (and --eval-every, "
    "--seeds score on them).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="New folder for the trained model (written atomically; MODEL is not touched).",
)
@train_options
@max_drop_option
@max_label_drop_option
@click.option(
    "--force", is_flag=True, help="Write OUT even when the check fails (the failure is recorded)."
)
@click.option(
    "--add",
    is_flag=True,
    help="First add the data's labels MODEL does not have (rows imprinted from their examples).",
)
@click.option(
    "--text-column", default=TEXT_COLUMN, show_default=True, help="Text column of the data files."
)
@click.option(
    "--label-column",
    default=LABEL_COLUMN,
    show_default=True,
    help="Label column of the data files.",
)
@label_sep_option
@problem_type_option
@image_column_option
@audio_column_option
@head_path_option
@trust_remote_code_option
@allow_pickle_option
@base_model_option
@json_option
def train(model, data, replay, holdout, output, as_json, **opts) -> None:
    """Train MODEL's new labels on --data without forgetting the old ones; write -o OUT.

    By default the top encoder block, the neck (e.g. BERT's pooler) and the new rows train (the
    block's inputs are computed once, so only it runs), the old rows are kept bit-identical,
    never-trained new rows are imprinted from their examples, --replay is replayed (new examples
    weigh 10x) with distillation to MODEL, and the new labels' biases are calibrated against the
    gate on replay examples held out of training (one shift for all, within half of --max-drop,
    each new label then kept to the false positives an 80% precision allows). With --holdout,
    the old-label check compares MODEL and the result:
    a drop beyond --max-drop (or --max-label-drop for one label) exits with code 3 and writes nothing
    (unless --force).

    A multi-label model (config problem_type multi_label_classification, or --problem-type
    multi) reads a `labels` column (--label-sep between labels; JSONL: a list), trains with BCE,
    takes the parent's outputs as the targets of the old labels the new data was not annotated
    for (--annotated new), calibrates each new label's bias on held-out old texts, and is gated
    on old-label micro-F1 (default --max-drop 1.0).

    A token classifier (NER) reads CoNLL or JSONL sentences, trains its top 3 blocks with the
    new types' words at 3.5% of the loss weight, replays up to 1,000 sentences per old tag
    (their words learn the parent's predicted tags; words read as O that lie nearest a new
    type's word are left out), is not calibrated, and is gated on old-type entity F1 (default
    --max-drop 1.0): docs/ner.md.

    \b
    Examples:
      headsurgeon train grown/ --data new.csv --replay replay.csv --holdout holdout.csv -o tuned/
      headsurgeon train parent/ --data new.csv --add --replay replay.csv -o tuned/
      headsurgeon train vit-grown/ --data new/ --replay old/ --holdout test/ -o vit-tuned/
      headsurgeon train tagger-grown/ --data new.csv --replay old.csv --holdout test.csv -o tagger-tuned/
      torchrun --nproc-per-node 2 -m headsurgeon train grown/ --data new.csv --freeze none -o tuned/
    """
    from ..errors import GateFailedError
    from ..train import processes
    from ..train.folders import train as run

    if not processes.is_main():  # under torchrun: one report, one set of warnings (the main's)
        logging.getLogger("headsurgeon").setLevel(logging.ERROR)
    options = options_from(opts, as_json)
    try:
        result = run(model, data, output, replay=replay, holdout=holdout, options=options,
                     **api_keywords(opts))  # fmt: skip
    except GateFailedError as e:  # print the report, then let _Group map the error (exit 3)
        if e.report is not None:
            emit(as_json, {"output": None, "check": e.report.to_dict()}, e.report.render())
        raise
    if result.main_process:
        emit(as_json, result.to_dict(), _summary(result))


def _summary(result) -> str:
    """What ``train`` prints: the check's report, the calibration and training lines, then
    what was trained and written."""
    stats = result.stats
    cal = stats.get("calibration") or {}
    held = f"; {cal['examples']} held out to calibrate" if cal.get("held_out") else ""
    lines = [
        f"trained {', '.join(stats['new_labels']) or 'no new label'} on {stats['data_examples']} examples "
        f"(+{stats['replay_examples']} replayed{held}) in {stats['wall_time_s']:.1f} s; wrote {result.output}"
    ]
    if stats.get("near_synonyms"):  # just above the last line, what was written
        lines.insert(0, _pairs_line(stats["near_synonyms"]))
    if stats.get("training"):
        lines.insert(0, _training_line(stats["training"]))
    if cal:
        lines.insert(0, _calibration_line(cal))
    elif result.options.calibrate is not None and (line := _no_calibration_line(result)):
        lines.insert(0, line)
    if result.report is not None:
        lines.insert(0, result.report.render())
    return "\n".join(lines)


def _calibration_line(cal: dict) -> str:
    """One line on what calibration did (the shifts, its estimate and what the gate allows).

    Every new label gets the common shift (``common_shift``); the precision bound and the
    per-old-label cap can only lower a label below it."""
    if cal.get("method") == "thresholds":
        return _thresholds_line(cal)
    values = list(cal["shifts"].values())
    common = cal.get("common_shift", max(values))  # older records lack it
    lowered = [v for v in values if v < common - 5e-5]
    shift = f"{common:+.3f}"
    if lowered:
        shift += (
            f" ({len(lowered)} of {len(values)} lowered to {min(lowered):+.3f}"
            + (f"..{max(lowered):+.3f}" if len(set(lowered)) > 1 else "")
            + " by the precision bound or the per-label cap)"
        )
    where = "held-out" if cal["held_out"] else "replayed (trained-on)"
    each = 100 / max(1, cal["examples"])  # calibration raises nothing when one is above allowed
    why = (
        "trained on them"
        if not cal["held_out"] and each <= cal["allowed_drop_pts"] + 1e-9
        else f"one example is {each:.2f} pt"
    )
    unresolved = "" if cal.get("resolved", True) else f"; not raised: {why}"
    trained = cal.get("criterion_trained_drop_pts") or 0.0
    beyond = f" beyond the {trained:.2f} pt training alone lost there" if trained > 0 else ""
    return (
        f"calibration ({cal['method']}): new-label biases shifted {shift}; old-label drop "
        f"{cal['estimated_drop_pts']:.2f} pt on {cal['examples']} {where} examples "
        f"(allowed {cal['allowed_drop_pts']:.2f} pt{beyond}){unresolved}"
    )


def _no_calibration_line(result) -> str | None:
    """One line saying that new-label calibration does not apply to the model's task (its
    ``calibrates`` is false; what its gate still checks), or ``None`` when it does."""
    from ..tasks import task_named

    task = task_named(result.stats["task"])
    if task.calibrates:
        return None
    gate = (
        f"; the {task.check_name} still gates the old labels" if result.report is not None else ""
    )
    return (
        f"calibration: does not apply to {task.name} models (--calibrate and its options are "
        f"ignored; the new labels' biases stay as trained){gate}"
    )


def _pairs_line(pairs: dict) -> str:
    """One line: each new label's nearest old label as the parent reads its examples (where a
    near-synonym would take an old label's examples), closest first, at most five."""
    ranked = sorted(pairs.items(), key=lambda kv: -kv[1]["parent_probability"])
    shown = ", ".join(
        f"{new} ~ {p['old_label']} ({p['parent_probability']:.2f})" for new, p in ranked[:5]
    )
    more = f" and {len(ranked) - 5} more" if len(ranked) > 5 else ""
    return f"nearest old labels (the parent's reading of the new examples): {shown}{more}"


def _thresholds_line(cal: dict) -> str:
    """One line on a multi-label calibration: each new label's bias shift and how many
    held-out old texts it fires on (of how many it may)."""
    where = "held-out" if cal["held_out"] else "replayed (trained-on)"
    shifts = ", ".join(
        f"{name} {shift:+.3f} ({cal['false_positives'][name]} fire)"
        for name, shift in cal["shifts"].items()
    )
    return (
        f"calibration (thresholds): new-label biases shifted {shifts} on {cal['examples']} "
        f"{where} old texts (at most {cal['allowed_false_positives']} may fire each); decided "
        "at 0.5"
    )


def _training_line(summary: dict) -> str:
    """One line on how training went (the telemetry's summary: first and last quarter's means)
    and the files that show it."""

    def span(key: str, fmt: str = ".3g") -> str:
        first, last = summary[key]
        return f"{first:{fmt}} -> {last:{fmt}}"

    seeds = f"{summary['seeds']} seeds, " if summary.get("seeds", 1) > 1 else ""
    parts = [f"training: {seeds}{summary['steps']} steps"]
    if summary.get("loss"):
        new = f" (new {span('new_loss')})" if summary.get("new_loss") else ""
        parts.append(f"loss {span('loss')}{new}")
    if summary.get("new_row_grad_norm"):
        parts.append(f"new-row grad norm {span('new_row_grad_norm')}")
    if summary.get("holdout"):
        parts.append(f"holdout {span('holdout', '.4f')} (best)")
    files = f"; {', '.join(summary['files'])}" if summary.get("files") else ""
    return ", ".join(parts) + files
