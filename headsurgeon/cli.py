"""The ``headsurgeon`` command line: thin shells over the API.

Each command parses its options, calls one API function and renders the result as text or, with
``--json``, as one JSON document on stdout. Errors are mapped to messages and exit codes in one
place (:class:`_Group`): 0 ok, 1 headsurgeon error, 2 usage, 3 old-label check failed.
Heavy libraries are imported inside the commands, so ``--help`` answers fast.
"""

from __future__ import annotations

import json
import logging
import sys

import click

from . import __version__
from .checks import DEFAULT_BATCH_SIZE, DEFAULT_MAX_DROP
from .data import LABEL_COLUMN, TEXT_COLUMN
from .errors import HeadSurgeonError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_GATE = 0, 1, 2, 3


class _Group(click.Group):
    """Turns every error into one line on stderr and an exit code (traceback with --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except HeadSurgeonError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # a bug or an unexpected library error: still one line
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(
                f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for a traceback)",
                err=True,
            )
            ctx.exit(EXIT_ERROR)


def _emit(as_json: bool, data, text: str) -> None:
    """Render a command's result: JSON document or human text."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON (for pipelines)."
)
head_path_option = click.option(
    "--head-path",
    multiple=True,
    metavar="PATH",
    help="Dotted path of the head (e.g. classifier.out_proj); repeat for parallel heads. "
    "Default: found automatically.",
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="headsurgeon")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Grow the label set of a trained Hugging Face classifier without losing what it knows.

    \b
    Typical flow:
      headsurgeon inspect model/                        # what head, which labels
      headsurgeon add-label model/ --name refund -o grown/
      headsurgeon train grown/ --data new.csv --replay old.csv --holdout test.csv -o tuned/
      headsurgeon push tuned/ --repo org/model

    Exit codes: 0 ok, 1 error (one line on stderr), 2 usage, 3 the old-label check failed.
    """
    ctx.obj = {"debug": debug}
    if debug or verbose:
        logging.basicConfig(
            level=logging.DEBUG if debug else logging.INFO, format="%(message)s", stream=sys.stderr
        )


@main.command()
@click.argument("model", type=click.Path(file_okay=False))
@json_option
def inspect(model: str, as_json: bool) -> None:
    """Show MODEL's architecture, head path(s), head shape, dtype and labels.

    Reads config.json and builds the architecture on the meta device: no weights are loaded.
    """
    from .checkpoint import inspect_checkpoint

    info = inspect_checkpoint(model)
    head = info["head"]
    labels = ", ".join(f"{i}:{n}" for i, n in enumerate(info["labels"]))
    _emit(
        as_json,
        info,
        (
            f"architecture: {info['architecture']} ({info['model_type']})\n"
            f"head:         {', '.join(head['paths'])}  Linear({head['in_features']} -> {head['out_features']}, "
            f"bias={head['bias']})  dtype {head['dtype']}  [{head['method']}]\n"
            f"labels ({info['num_labels']}): {labels}"
        ),
    )


link_option = click.option(
    "--link",
    is_flag=True,
    default=False,
    help="With -o: hard-link the unchanged files (tokenizer, untouched shards) into the new folder "
    "instead of copying them: instant and no extra disk, but both folders then share those "
    "files' bytes. headsurgeon never writes into an existing file (it writes a new one and "
    "renames it), but a tool that edits a file in place would change both. Default: copy at "
    "kernel speed (a reflink where the filesystem supports it). In place, unchanged files are "
    "always kept as they are.",
)
allow_pickle_option = click.option(
    "--allow-pickle",
    is_flag=True,
    default=False,
    help="Accept a pytorch_model.bin (pickle) checkpoint: unpickling can run code from the file, "
    "so only for files you trust. The model is loaded in memory and written back as safetensors.",
)


@main.command("add-label")
@click.argument("model", type=click.Path(file_okay=False))
@click.option(
    "--name", "names", multiple=True, required=True, help="New label name; repeat for several."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    help="Write a new model folder here "
    "(MODEL is not touched; tokenizer/processor files are carried over). Default: update MODEL in place.",
)
@click.option(
    "--init",
    type=click.Choice(["mean", "zeros", "normal"]),
    default=None,
    help="How new rows start: mean of the old rows (default), zeros, or normal(0, initializer_range).",
)
@click.option(
    "--bias",
    type=click.Choice(["mean", "min", "zeros"]),
    default=None,
    help="How new biases start: mean (default) or min of the old biases, or zero.",
)
@click.option("--seed", type=int, default=None, help="Seed for --init normal.")
@head_path_option
@link_option
@allow_pickle_option
@json_option
def add_label(
    model, names, output, init, bias, seed, head_path, link, allow_pickle, as_json
) -> None:
    """Append new labels to MODEL's classifier head, keeping every old weight bit-identical.

    Safetensors checkpoints are streamed: only the head is read and only the shard holding it is
    rewritten; the result replaces MODEL (or appears as -o) in one atomic step.

    \b
    Examples:
      headsurgeon add-label model/ --name lost_or_stolen_card -o grown/
      headsurgeon add-label model/ --name a --name b            # in place
    """
    from .checkpoint import add_labels_to_checkpoint

    result = add_labels_to_checkpoint(
        model,
        list(names),
        output,
        init=init,
        bias=bias,
        head_path=list(head_path) or None,
        seed=seed,
        link=link,
        allow_pickle=allow_pickle,
    )
    where = output or model
    _emit(
        as_json,
        {"output": str(where), **result.to_dict()},
        (
            f"added {', '.join(result.added)} to {', '.join(result.head.paths)} "
            f"({len(result.labels_before)} -> {len(result.labels_after)} labels, init {result.init}); wrote {where}"
        ),
    )


@main.command("push")
@click.argument("model", type=click.Path(file_okay=False))
@click.option(
    "--repo",
    "repo_id",
    required=True,
    metavar="ORG/NAME",
    help="Hub repository (created if missing).",
)
@click.option(
    "--private",
    is_flag=True,
    default=None,
    help="Create the repository private (an existing one keeps its visibility).",
)
@click.option(
    "--revision",
    metavar="BRANCH",
    default=None,
    help="Commit to this branch (created from main if missing). Default: main.",
)
@click.option(
    "--pr",
    "create_pr",
    is_flag=True,
    help="Open a pull request instead of committing to the branch.",
)
@click.option(
    "-m", "--message", default=None, help="Commit message. Default: a summary of the label changes."
)
@click.option(
    "--force",
    is_flag=True,
    help="Push even though the last old-label check recorded in headsurgeon.json failed.",
)
@json_option
def push(model, repo_id, private, revision, create_pr, message, force, as_json) -> None:
    """Publish MODEL to the Hugging Face Hub in one commit, with a model card (README.md).

    Uploads config.json (id2label/label2id), weights, tokenizer/processor files and
    headsurgeon.json. The token comes from HF_TOKEN or `hf auth login`; the endpoint from
    HF_ENDPOINT. Pushing an unchanged folder makes no commit.

    \b
    Examples:
      headsurgeon push grown/ --repo me/grown
      headsurgeon push grown/ --repo org/model --revision grown-labels --pr
    """
    from .hub import push as push_model

    result = push_model(
        model,
        repo_id,
        private=private or None,
        revision=revision,
        create_pr=create_pr,
        message=message,
        force=force,
    )
    if not result.changed:
        text = f"no changes: {result.repo_id}@{result.revision} already has these files ({result.commit_url})"
    elif result.pr_url:
        text = f"opened pull request {result.pr_url}\ncommit {result.commit_url}"
    else:
        text = (
            f"pushed {model} to {result.repo_url} ({result.revision})\ncommit {result.commit_url}"
        )
    _emit(as_json, result.to_dict(), text)


@main.command()
@click.argument("parent", type=click.Path(file_okay=False))
@click.argument("child", type=click.Path(file_okay=False))
@click.option(
    "--holdout",
    required=True,
    type=click.Path(dir_okay=False),
    help="Held-out labelled texts (.csv/.tsv/.jsonl) with examples of the parent's labels.",
)
@click.option(
    "--max-drop",
    type=float,
    default=DEFAULT_MAX_DROP,
    show_default=True,
    help="Largest allowed drop of old-label accuracy, in percentage points.",
)
@click.option("--text-column", default=TEXT_COLUMN, show_default=True, help="Column of the texts.")
@click.option(
    "--label-column", default=LABEL_COLUMN, show_default=True, help="Column of the labels."
)
@click.option(
    "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, show_default=True, help="Texts per pass."
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Also draw a per-label PNG chart (needs matplotlib).",
)
@click.option(
    "--no-record", is_flag=True, help="Do not append a check event to CHILD's headsurgeon.json."
)
@json_option
def check(
    parent,
    child,
    holdout,
    max_drop,
    text_column,
    label_column,
    batch_size,
    plot,
    no_record,
    as_json,
):
    """Check that CHILD still knows PARENT's labels: old-label accuracy on a holdout.

    Evaluates both models once on the holdout, prints old-label accuracy before/after, the
    per-label changes, flipped predictions and the new labels' precision/recall/F1, records the
    result in CHILD's headsurgeon.json and exits with code 3 when the drop exceeds --max-drop.

    \b
    Example:
      headsurgeon check parent/ tuned/ --holdout test.csv --max-drop 0.5
    """
    from .checks import check_old_labels, enforce, record_check
    from .plot import plot_report, require_matplotlib

    if plot:
        require_matplotlib()  # fail before the evaluation, not after it
    report = check_old_labels(
        parent, child, holdout, max_drop=max_drop, batch_size=batch_size,
        text_column=text_column, label_column=label_column,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    _emit(
        as_json,
        {"parent": parent, "child": child, "holdout": holdout, **report.to_dict()},
        report.render(),
    )
    if not no_record:
        record_check(child, report, parent=parent, holdout=holdout)
    if plot:
        plot_report(report, plot)
    enforce(report)


@main.command("remove-label")
@click.argument("model", type=click.Path(file_okay=False))
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    help="Write a new model folder here (MODEL untouched). Default: update MODEL in place, atomically.",
)
@head_path_option
@link_option
@allow_pickle_option
@json_option
def remove_label(model, names, output, head_path, link, allow_pickle, as_json) -> None:
    """Drop the labels NAMES from MODEL's head; the others are re-numbered densely, order kept.

    \b
    Example:
      headsurgeon remove-label model/ obsolete_intent -o smaller/
    """
    from .checkpoint import remove_labels_from_checkpoint

    result = remove_labels_from_checkpoint(
        model,
        list(names),
        output,
        head_path=list(head_path) or None,
        link=link,
        allow_pickle=allow_pickle,
    )
    where = output or model
    _emit(
        as_json,
        {"output": str(where), **result.to_dict()},
        f"removed {', '.join(result.removed)} from {', '.join(result.head.paths)} "
        f"({len(result.labels_before)} -> {len(result.labels_after)} labels); wrote {where}",
    )


@main.command("rename-label")
@click.argument("model", type=click.Path(file_okay=False))
@click.argument("old")
@click.argument("new")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    help="Write a new model folder here (MODEL untouched). Default: update MODEL in place, atomically.",
)
@link_option
@json_option
def rename_label(model, old, new, output, link, as_json) -> None:
    """Rename label OLD to NEW in MODEL's config (same id; no weight is read or written).

    \b
    Example:
      headsurgeon rename-label model/ card_lost lost_or_stolen_card
    """
    from .checkpoint import rename_label_in_checkpoint

    labels = rename_label_in_checkpoint(model, old, new, output, link=link)
    where = output or model
    _emit(
        as_json,
        {"output": str(where), "old": old, "new": new, "labels_after": labels},
        f"renamed {old} -> {new} (id {labels.index(new)}); wrote {where}",
    )


# --- train -------------------------------------------------------------------------------------
from .checks import DEFAULT_MAX_DROP as _MAX_DROP  # noqa: E402
from .data import LABEL_COLUMN, TEXT_COLUMN  # noqa: E402
from .train import options as _topt  # noqa: E402  (no torch: options only)


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
    help="backbone: frozen except the top --train-layers blocks, whose inputs are computed once; none: everything trains.",
)
@click.option(
    "--train-layers",
    type=int,
    default=_topt.DEFAULT_TRAIN_LAYERS,
    show_default=True,
    help="With --freeze backbone, train the top K encoder blocks with the head (0: the head alone, on cached features).",
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
    help="Train N seeds, stop weak ones at 30%% of the steps, keep the best on --holdout.",
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
    type=float,
    default=_topt.DEFAULT_CALIBRATE,
    metavar="PTS",
    show_default=True,
    help="After training (frozen backbone or --train-layers, with --replay): set each new label's bias so that PTS "
    "percent of the replayed old examples the parent got right flip to a new label.",
)
@click.option("--no-calibrate", is_flag=True, help="Keep the trained biases (no --calibrate).")
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
@json_option
def train(
    model,
    data,
    replay,
    holdout,
    output,
    max_drop,
    force,
    add,
    text_column,
    label_column,
    head_path,
    as_json,
    **opts,
) -> None:
    """Train MODEL's new labels on --data without forgetting the old ones; write -o OUT.

    By default only the top encoder block and the new rows train (the block's inputs are computed
    once, so only it runs), the old rows are kept bit-identical, never-trained new rows are
    imprinted from their examples, every example of --replay is replayed (new examples weigh
    10x) with distillation to MODEL, and each new label's bias is calibrated on the replay. With --holdout, the old-label check compares MODEL and the result:
    a drop beyond --max-drop exits with code 3 and writes nothing (unless --force).

    \b
    Examples:
      headsurgeon train grown/ --data new.csv --replay train.csv --holdout test.csv -o tuned/
      headsurgeon train parent/ --data new.csv --add --replay train.csv -o tuned/
      torchrun --nproc-per-node 2 -m headsurgeon train grown/ --data new.csv --freeze none -o tuned/
    """
    from .errors import GateFailedError
    from .train import TrainOptions
    from .train.folders import train as run

    if opts.pop("no_calibrate"):
        opts["calibrate"] = None
    options = TrainOptions(**opts, progress=sys.stderr.isatty() and not as_json)
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
            text_column=text_column,
            label_column=label_column,
            head_path=list(head_path) or None,
        )
    except GateFailedError as e:  # print the report, then let _Group map the error (exit 3)
        if e.report is not None:
            _emit(as_json, {"output": None, "check": e.report.to_dict()}, e.report.render())
        raise
    stats = result.stats
    text = (
        f"trained {', '.join(stats['new_labels']) or 'no new label'} on {stats['data_examples']} examples "
        f"(+{stats['replay_examples']} replayed) in {stats['wall_time_s']:.1f} s; wrote {result.output}"
    )
    if result.report is not None:
        text = result.report.render() + "\n" + text
    _emit(as_json, result.to_dict(), text)
