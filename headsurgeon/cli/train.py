"""``train``: teach the new labels without forgetting the old ones, behind the old-label check."""

from __future__ import annotations

import logging
import sys

import click

from ..checks import DEFAULT_MAX_DROP as _MAX_DROP
from ..data import LABEL_COLUMN, TEXT_COLUMN
from ..train import options as _topt  # no torch: options only
from .app import (
    allow_pickle_option,
    base_model_option,
    emit,
    head_path_option,
    json_option,
    main,
    max_label_drop_option,
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


@main.command()
@click.argument("model", type=click.Path(file_okay=False))
@click.option(
    "--data",
    required=True,
    type=click.Path(dir_okay=False),
    help="Training file (.csv/.tsv/.jsonl) with the new labels' examples.",
)
@click.option(
    "--replay",
    type=click.Path(dir_okay=False),
    help="File of old labels' examples to replay (e.g. the parent's training data).",
)
@click.option(
    "--holdout",
    type=click.Path(dir_okay=False),
    help="Held-out file: the old-label check runs on it (and --eval-every, --seeds score on it).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="New folder for the trained model (written atomically; MODEL is not touched).",
)
@click.option(
    "--freeze",
    type=click.Choice(_topt.FREEZE_CHOICES),
    default=_topt.DEFAULT_FREEZE,
    show_default=True,
    help="backbone: frozen except the top --train-layers blocks and the neck (--train-neck), whose inputs are computed "
    "once; none: everything trains.",
)
@click.option(
    "--train-layers",
    type=int,
    default=_topt.DEFAULT_TRAIN_LAYERS,
    show_default=True,
    help="With --freeze backbone, train the top K encoder blocks with the neck and the head (0: no block; the blocks' "
    "outputs are computed once).",
)
@click.option(
    "--train-neck/--no-train-neck",
    default=_topt.DEFAULT_TRAIN_NECK,
    show_default=True,
    help="With --freeze backbone, train the neck (the layers between the blocks and the head: BERT's pooler, "
    "RoBERTa's classifier.dense, a final norm) with the head. --train-layers 0 --no-train-neck: the head alone, "
    "on cached features.",
)
@click.option(
    "--protect-old-rows/--no-protect-old-rows",
    default=_topt.DEFAULT_PROTECT_OLD_ROWS,
    show_default=True,
    help="Keep the old labels' rows and biases bit-identical.",
)
@click.option(
    "--replay-per-label",
    type=int,
    default=_topt.DEFAULT_REPLAY_PER_LABEL,
    show_default=True,
    help="Old examples replayed per old label (0: all of --replay).",
)
@click.option(
    "--replay-confusable",
    type=int,
    default=_topt.DEFAULT_REPLAY_CONFUSABLE,
    show_default=True,
    help="With --replay-per-label: replay ALL examples of the K old labels the parent reads each "
    "new label's examples as (its near-synonyms, where its false positives and misses are).",
)
@click.option(
    "--distill",
    type=float,
    default=_topt.DEFAULT_DISTILL,
    show_default=True,
    help="Weight of distillation to the parent's old-label logits (KL); 0: off.",
)
@click.option(
    "--temperature",
    type=float,
    default=_topt.DEFAULT_TEMPERATURE,
    show_default=True,
    help="Distillation temperature.",
)
@click.option(
    "--init",
    type=click.Choice(_topt.INIT_CHOICES),
    default=_topt.DEFAULT_INIT,
    help="How new rows start. Default: imprint rows never trained (from the data's examples), keep trained ones.",
)
@click.option(
    "--llrd",
    type=float,
    default=_topt.DEFAULT_LLRD,
    show_default=True,
    help="Layer-wise LR decay: depth d from the top trains at lr*LLRD^d.",
)
@click.option(
    "--warmup",
    type=float,
    default=_topt.DEFAULT_WARMUP,
    show_default=True,
    help="Linear warmup: ratio of the steps if < 1, else steps.",
)
@click.option(
    "--reinit-top",
    type=int,
    default=_topt.DEFAULT_REINIT_TOP,
    show_default=True,
    help="Re-initialise the top N encoder blocks first (they must train).",
)
@click.option(
    "--swa/--no-swa",
    default=_topt.DEFAULT_SWA,
    show_default=True,
    help="Stochastic weight averaging over the second half of training.",
)
@click.option(
    "--eval-every",
    type=int,
    default=_topt.DEFAULT_EVAL_EVERY,
    show_default=True,
    help="Score on --holdout every N steps and keep the best weights (0: off).",
)
@click.option(
    "--early-stopping",
    type=int,
    default=_topt.DEFAULT_EARLY_STOPPING,
    show_default=True,
    help="Stop after N evaluations without improvement (0: off).",
)
@click.option(
    "--seeds",
    type=int,
    default=_topt.DEFAULT_SEEDS,
    show_default=True,
    help="Train N seeds, stop weak ones at 30% of the steps, keep the best on --holdout.",
)
@click.option(
    "--seed",
    type=int,
    default=_topt.DEFAULT_SEED,
    show_default=True,
    help="First seed (also the replay sample).",
)
@click.option("--epochs", type=float, default=_topt.DEFAULT_EPOCHS, show_default=True)
@click.option(
    "--lr",
    type=float,
    default=_topt.DEFAULT_LR,
    show_default=True,
    help="Learning rate (of the head; see --llrd).",
)
@click.option("--batch-size", type=int, default=_topt.DEFAULT_BATCH_SIZE, show_default=True)
@click.option(
    "--max-length",
    type=int,
    default=_topt.DEFAULT_MAX_LENGTH,
    show_default=True,
    help="Tokenizer truncation length.",
)
@click.option("--weight-decay", type=float, default=_topt.DEFAULT_WEIGHT_DECAY, show_default=True)
@click.option(
    "--max-steps",
    type=int,
    default=_topt.DEFAULT_MAX_STEPS,
    show_default=True,
    help="Cap the training steps (-1: no cap).",
)
@click.option(
    "--new-weight",
    type=float,
    default=_topt.DEFAULT_NEW_WEIGHT,
    show_default=True,
    help="Loss weight of the new labels' examples relative to replayed ones.",
)
@click.option(
    "--calibrate",
    type=_Calibrate(),
    default=_topt.DEFAULT_CALIBRATE,
    show_default=True,
    help="After training (frozen backbone or --train-layers, with --replay), shift the new labels' "
    "biases by one common amount. gate: the largest shift whose old-label drop on replay "
    "examples held out of training stays within --calibrate-safety of --max-drop; PTS: the "
    "shift that flips PTS percent of the held-out old examples the parent got right.",
)
@click.option("--no-calibrate", is_flag=True, help="Keep the trained biases (no --calibrate).")
@click.option(
    "--calibrate-per-label",
    type=int,
    default=_topt.DEFAULT_CALIBRATE_PER_LABEL,
    show_default=True,
    help="Old examples per old label held out of --replay to calibrate on (at most a third of a "
    "label's; 0: calibrate on the training replay).",
)
@click.option(
    "--calibrate-safety",
    type=float,
    default=_topt.DEFAULT_CALIBRATE_SAFETY,
    show_default=True,
    help="Fraction of --max-drop (and --max-label-drop) the held-out estimate may spend.",
)
@click.option(
    "--calibrate-fixes",
    type=float,
    default=_topt.DEFAULT_CALIBRATE_FIXES,
    show_default=True,
    help="In the held-out estimate, how much an old example training fixed offsets one it broke "
    "(1: the gate's own net measure; below 1: fixes on replay the parent was trained on are "
    "trusted less, as they transfer to new data only in part).",
)
@click.option(
    "--calibrate-precision",
    type=float,
    default=_topt.DEFAULT_CALIBRATE_PRECISION,
    show_default=True,
    help="Then lower each new label until its false positives on the held-out examples allow "
    "this precision, were the label as frequent as an average old label (0: no bound).",
)
@click.option(
    "--calibrate-label-cap",
    type=float,
    default=_topt.DEFAULT_CALIBRATE_LABEL_CAP,
    metavar="PCT",
    help="With --calibrate: lower a new label's bias until it takes at most PCT percent of any "
    "one old label's held-out examples (the budget then cannot fall on one near-synonym label).",
    show_default=True,
)
@click.option(
    "--annotated",
    type=click.Choice(_topt.ANNOTATED_CHOICES),
    default=_topt.DEFAULT_ANNOTATED,
    show_default=True,
    help="Token classification: what --data was annotated for. new: the new entity types only "
    "(its O words learn the parent's reading, so old entities left untagged are not unlearned); "
    "all: every tag is gold.",
)
@click.option(
    "--device",
    type=click.Choice(_topt.DEVICE_CHOICES),
    default=_topt.DEFAULT_DEVICE,
    show_default=True,
    help="auto: GPU when present.",
)
@click.option(
    "--max-drop",
    type=float,
    default=_MAX_DROP,
    show_default=True,
    help="Tolerated old-label accuracy drop in percentage points.",
)
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
@head_path_option
@trust_remote_code_option
@allow_pickle_option
@base_model_option
@json_option
def train(
    model,
    data,
    replay,
    holdout,
    output,
    max_drop,
    max_label_drop,
    force,
    add,
    text_column,
    label_column,
    head_path,
    trust_remote_code,
    allow_pickle,
    base_model,
    as_json,
    **opts,
) -> None:
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

    \b
    Examples:
      headsurgeon train grown/ --data new.csv --replay train.csv --holdout test.csv -o tuned/
      headsurgeon train parent/ --data new.csv --add --replay train.csv -o tuned/
      torchrun --nproc-per-node 2 -m headsurgeon train grown/ --data new.csv --freeze none -o tuned/
    """
    from ..errors import GateFailedError
    from ..train import TrainOptions, processes
    from ..train.folders import train as run

    if not processes.is_main():  # under torchrun: one report, one set of warnings (the main's)
        logging.getLogger("headsurgeon").setLevel(logging.ERROR)
    if opts.pop("no_calibrate"):
        opts["calibrate"] = None
    if not opts["calibrate_precision"]:
        opts["calibrate_precision"] = None
    options = TrainOptions(**opts, progress=_progress(as_json))
    try:
        result = run(
            model,
            data,
            output,
            replay=replay,
            holdout=holdout,
            options=options,
            add=add,
            force=force,
            max_drop=max_drop,
            max_label_drop=max_label_drop,
            text_column=text_column,
            label_column=label_column,
            head_path=list(head_path) or None,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
            base_model=base_model,
        )
    except GateFailedError as e:  # print the report, then let _Group map the error (exit 3)
        if e.report is not None:
            emit(as_json, {"output": None, "check": e.report.to_dict()}, e.report.render())
        raise
    if not result.main_process:
        return
    stats = result.stats
    cal = stats.get("calibration") or {}
    held = f"; {cal['examples']} held out to calibrate" if cal.get("held_out") else ""
    lines = [
        f"trained {', '.join(stats['new_labels']) or 'no new label'} on {stats['data_examples']} examples "
        f"(+{stats['replay_examples']} replayed{held}) in {stats['wall_time_s']:.1f} s; wrote {result.output}"
    ]
    if cal:
        lines.insert(0, _calibration_line(cal))
    if result.report is not None:
        lines.insert(0, result.report.render())
    emit(as_json, result.to_dict(), "\n".join(lines))


def _calibration_line(cal: dict) -> str:
    """One line on what calibration did (the shifts, its estimate and what the gate allows)."""
    shifts = sorted(set(cal["shifts"].values()))
    shift = f"{shifts[0]:+.3f}" if len(shifts) == 1 else f"{shifts[0]:+.3f} to {shifts[-1]:+.3f}"
    where = "held-out" if cal["held_out"] else "replayed (trained-on)"
    return (
        f"calibration ({cal['method']}): new-label biases shifted {shift}; old-label drop "
        f"{cal['estimated_drop_pts']:.2f} pt on {cal['examples']} {where} examples "
        f"(allowed {cal['allowed_drop_pts']:.2f} pt)"
    )


def _progress(as_json: bool) -> bool:
    """Progress bars on a terminal, never with --json."""
    return sys.stderr.isatty() and not as_json
