"""``sweep``: train the same data once per number of unfrozen top blocks, and compare."""

from __future__ import annotations

import click

from ..data import LABEL_COLUMN, TEXT_COLUMN
from .app import (
    allow_pickle_option,
    api_keywords,
    audio_column_option,
    emit,
    head_path_option,
    image_column_option,
    json_option,
    label_sep_option,
    main,
    max_drop_option,
    max_label_drop_option,
    trust_remote_code_option,
)
from .train import options_from, train_options

_FILE = click.Path(dir_okay=False)
#: a data file, or a folder of images or clips by label
_DATA = click.Path()


@main.command()
@click.argument("model", type=click.Path(file_okay=False))
@click.option(
    "--data", required=True, type=_DATA,
    help="Training file (or folder of images/clips) with the new labels' examples.",
)  # fmt: skip
@click.option("--replay", type=_DATA, help="Old labels' examples to replay, as --data.")
@click.option(
    "--holdout", required=True, type=_DATA, help="Held-out examples the old-label check runs on."
)
@click.option("--layers", required=True, metavar="K,K,...",
              help="Settings: numbers of top blocks to train (0: head and neck on cached features) "
              "or 'all' (--freeze none), e.g. 0,1,2,all.")  # fmt: skip
@click.option("--seeds", default=1, show_default=True, type=int,
              help="Runs per setting, seeds --seed .. --seed+N-1 (one row each).")  # fmt: skip
@click.option("--plot", type=_FILE, help="Draw drop and new-label F1 per setting as a PNG.")
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Write the best run's model to this new folder (default: nothing is written).")  # fmt: skip
@train_options(exclude=("freeze", "train_layers", "seeds"))
@max_drop_option
@max_label_drop_option
@click.option("--add", is_flag=True, help="First add the data's labels MODEL does not have.")
@click.option("--text-column", default=TEXT_COLUMN, show_default=True, help="Text column.")
@click.option("--label-column", default=LABEL_COLUMN, show_default=True, help="Label column.")
@label_sep_option
@image_column_option
@audio_column_option
@head_path_option
@trust_remote_code_option
@allow_pickle_option
@json_option
def sweep(model, data, replay, holdout, seeds, plot, as_json, **opts):
    """Train MODEL on --data once per setting of --layers (and seed); compare the runs.

    Each run trains a fresh copy of MODEL as `train` would with --train-layers K (or --freeze
    none for 'all'), and is scored on --holdout: old-label drop (pass/fail against --max-drop),
    the new labels' recall and F1, wall time, and how far the top block moved (||Δθ||/||θ||).
    The best trade-off (highest new-label F1 among the runs that pass) is marked *. The parent's
    features are computed once for all runs. Nothing is written but --plot and -o. A token
    classifier (NER) sweeps the same way on CoNLL/JSONL files, scored on old-type entity F1.

    \b
    Example:
      headsurgeon sweep parent/ --data new.csv --add --replay replay.csv --holdout holdout.csv \\
          --layers 0,1,2,all --plot sweep.png
    """
    from ..errors import GateFailedError
    from ..sweep import plot_sweep
    from ..sweep import sweep as run

    if plot:
        from ..plot import require_matplotlib

        require_matplotlib()  # fail before training, not after
    options = options_from(opts, as_json)
    try:
        report = run(model, data, replay=replay, holdout=holdout, seeds=seeds,  # not options'
                     options=options, **api_keywords(opts))  # fmt: skip
    except GateFailedError as e:  # no run passed: show them, then exit 3 (-o not written)
        if e.report is not None:
            emit(as_json, e.report.to_dict(), e.report.render())
        raise
    if plot:
        plot_sweep(report, plot)
        click.echo(f"wrote {plot}", err=True)  # stdout stays the report or --json
    emit(as_json, report.to_dict(), report.render())
