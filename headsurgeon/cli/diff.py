"""``diff``: what training changed in the weights of a child against its parent."""

from __future__ import annotations

import click

from .app import emit, json_option, main


@main.command()
@click.argument("parent", type=click.Path(file_okay=False))
@click.argument("child", type=click.Path(file_okay=False))
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Also draw the drift per layer group as a PNG chart (needs matplotlib).",
)
@json_option
def diff(parent, child, plot, as_json):
    """Show how far each layer of CHILD moved from PARENT: weights only, no data.

    Streams both safetensors checkpoints one tensor at a time and prints, per layer group
    (embeddings, each block, the neck, the head), the relative change ||Δθ||/||θ|| and the
    largest |Δ|; the head's rows paired by label name (each old label against its own parent
    row, through renames CHILD's headsurgeon.json records; bit-identical when protected), the
    removed and the new labels by name; the parameters the last `train` in CHILD's
    headsurgeon.json froze but that moved; tensors only on one side. Two models that are not
    parent and child (another architecture, hidden size, no label in common) are refused.

    \b
    Example:
      headsurgeon diff parent/ tuned/ --plot drift.png
    """
    from ..diff import diff_checkpoints, plot_diff
    from ..plot import require_matplotlib

    if plot:
        require_matplotlib()  # fail before reading the weights, not after
    report = diff_checkpoints(parent, child)
    emit(as_json, report.to_dict(), report.render())
    if plot:
        plot_diff(report, plot)
