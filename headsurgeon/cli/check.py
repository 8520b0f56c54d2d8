"""``check``: the held-out old-label check of a child against its parent."""

from __future__ import annotations

import click

from ..checks import DEFAULT_BATCH_SIZE
from ..data import LABEL_COLUMN, TEXT_COLUMN
from .app import (
    allow_pickle_option,
    api_keywords,
    audio_column_option,
    emit,
    image_column_option,
    json_option,
    label_sep_option,
    main,
    max_drop_option,
    max_label_drop_option,
    progress_shown,
    trust_remote_code_option,
)


@main.command()
@click.argument("parent", type=click.Path(file_okay=False))
@click.argument("child", type=click.Path(file_okay=False))
@click.option(
    "--holdout",
    required=True,
    type=click.Path(),
    help="Held-out labelled texts (.csv/.tsv/.jsonl) with examples of the parent's labels; for "
    "token classifiers CoNLL or JSONL sentences (entity F1 per type is checked); for image and "
    "audio classifiers a folder DIR/<label>/<file> or a .csv/.tsv/.jsonl of file paths.",
)
@max_drop_option
@max_label_drop_option
@click.option("--text-column", default=TEXT_COLUMN, show_default=True, help="Column of the texts.")
@click.option(
    "--label-column", default=LABEL_COLUMN, show_default=True, help="Column of the labels."
)
@label_sep_option
@image_column_option
@audio_column_option
@click.option(
    "--batch-size",
    type=int,
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Examples per pass.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Also draw a per-label PNG chart (needs matplotlib).",
)
@click.option(
    "--no-record", is_flag=True, help="Do not append a check event to CHILD's headsurgeon.json."
)
@trust_remote_code_option
@allow_pickle_option
@json_option
def check(parent, child, holdout, plot, no_record, as_json, **opts):
    """Check that CHILD still knows PARENT's labels: old-label accuracy on a holdout (entity F1
    per old type for token classifiers, micro-F1 at each label's threshold for multi-label
    classifiers).

    Evaluates both models once on the holdout, prints old-label accuracy before/after, the
    per-label changes, flipped predictions and the new labels' precision/recall/F1, records the
    result in CHILD's headsurgeon.json and exits with code 3 when the drop exceeds --max-drop (or
    one old label's drop exceeds --max-label-drop).

    \b
    Example:
      headsurgeon check parent/ tuned/ --holdout holdout.csv --max-drop 0.5
    """
    from ..checks import check_old_labels, enforce, record_check
    from ..plot import plot_report, require_matplotlib
    from ..record import read_record

    if plot:
        require_matplotlib()  # fail before the evaluation, not after it
    report = check_old_labels(
        parent, child, holdout, progress=progress_shown(as_json), **api_keywords(opts)
    )
    emit(
        as_json,
        {"parent": parent, "child": child, "holdout": holdout, **report.to_dict()},
        report.render(),
    )
    if not no_record and _recordable(child):
        record_check(child, report, parent=parent, holdout=holdout)
    if plot:
        plot_report(report, plot)
        click.echo(f"wrote {plot}", err=True)  # stdout stays the report or --json
    enforce(report, read_record(child))


def _recordable(child: str) -> bool:
    """Whether the check may be written into CHILD's headsurgeon.json: not into a write-protected
    model (as in-place surgery refuses one), which gets a note instead."""
    from ..atomic import check_writable
    from ..errors import CheckpointError

    try:
        check_writable(child)
    except CheckpointError:
        click.echo(
            f"note: {child} is read-only: the check is not recorded in its headsurgeon.json "
            "(--no-record skips recording)",
            err=True,
        )
        return False
    return True
