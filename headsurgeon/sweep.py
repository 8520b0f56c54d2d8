"""How many top blocks to train: the same data trained once per setting (and seed), side by side.

:func:`sweep` loads the model and its tokenizer once, reads the data once, and trains a fresh copy
of the model per setting through :func:`~headsurgeon.train.train_model`: ``K`` top encoder
blocks unfrozen (``--train-layers K``; ``0``: the head, with the neck by default, on cached
features) or ``all`` (``--freeze none``). Each run is scored by the old-label check on the
holdout (the drop in points, pass or fail), the new labels' recall and F1, its wall time and how
far its top block moved from the parent (``||Δθ|| / ||θ||``, measured as ``headsurgeon diff``
does). The parent's features are shared by every run, and the cached block inputs by the runs
with the same ``K``. The best trade-off is the run with the highest mean new-label F1 among
those that pass the check (none passes: the smallest drop).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .data import Columns
from .errors import GateFailedError, OptionsError
from .gate import Tolerance
from .legacy import TOLERANCE, bundles
from .train import TrainOptions

logger = logging.getLogger(__name__)

#: the ``--layers`` value meaning "train everything" (``--freeze none``)
ALL = "all"


@dataclass(frozen=True)
class Setting:
    """One point of the sweep: ``train_layers`` top blocks unfrozen, or everything (``None``)."""

    train_layers: int | None

    @property
    def name(self) -> str:
        return ALL if self.train_layers is None else str(self.train_layers)

    def options(self, base: TrainOptions, seed: int) -> TrainOptions:
        """``base`` with this setting's freezing and ``seed`` (one seed per run)."""
        if self.train_layers is None:  # calibration needs a frozen backbone: off, not warned
            return replace(base, freeze="none", seed=seed, seeds=1, calibrate=None)
        return replace(base, freeze="backbone", train_layers=self.train_layers, seed=seed, seeds=1)


def parse_layers(text: str) -> list[Setting]:
    """``"0,1,2,all"`` → settings, in the order given.

    Raises:
        OptionsError: an empty list, a value that is neither a number >= 0 nor ``all``, or a
            setting given twice.
    """
    values = [v.strip() for v in str(text).split(",")]
    if not any(values):
        raise OptionsError(f"--layers is empty: expected a comma-separated list like 0,1,2,{ALL}")
    settings = []
    for v in values:
        if v.lower() == ALL:
            settings.append(Setting(None))
        elif v.isdigit():
            settings.append(Setting(int(v)))
        else:
            raise OptionsError(
                f"--layers value {v!r} is not a number of top blocks (0, 1, 2, ...) or '{ALL}'; "
                f"expected a list like 0,1,2,{ALL}"
            )
        if settings[-1] in settings[:-1]:
            raise OptionsError(f"--layers gives {v!r} twice: list each setting once")
    return settings


@dataclass
class SweepRow:
    """One trained run: a setting and a seed, and what the check and the weights show.

    Attributes:
        setting: ``"0"``, ``"1"``, ... (top blocks trained) or ``"all"``.
        seed: the run's seed.
        drop_pts: old-label drop on the holdout, in points (the check's ``drop_pts``).
        passed: the check passed (drop within ``max_drop``, and ``max_label_drop`` if given).
        new_recall, new_f1: the new labels' recall and F1 on the holdout, means over the labels.
        seconds: wall time of the run (copy, caches it had to compute, training, check).
        top_drift: ``||Δθ|| / ||θ||`` of the top encoder block against the parent (0 when it
            was frozen; ``None``, as in ``diff``, when the parent's block is all zeros).
        drift: the same per layer group (embeddings, block i, neck, head: its parent's rows).
        steps: optimiser steps.
        best: this run is the sweep's best trade-off.
    """

    setting: str
    seed: int
    drop_pts: float
    passed: bool
    new_recall: float
    new_f1: float
    seconds: float
    top_drift: float | None
    drift: dict[str, float | None]
    steps: int
    best: bool = False

    def key(self) -> tuple:
        """Larger is better: passing first, then new-label F1 (passing) or a small drop."""
        return (self.passed, self.new_f1 if self.passed else -self.drop_pts)


@dataclass
class SweepReport:
    """The runs of :func:`sweep`, one :class:`SweepRow` per setting and seed, in run order."""

    model: str
    new_labels: list[str]
    max_drop: float
    rows: list[SweepRow] = field(default_factory=list)
    output: str | None = None

    @property
    def best(self) -> SweepRow | None:
        return next((r for r in self.rows if r.best), None)

    def settings(self) -> list[str]:
        return list(dict.fromkeys(r.setting for r in self.rows))

    def series(self) -> dict[str, list]:
        """Per setting (in order), the mean over its seeds of each measure (the plot's data)."""
        out: dict[str, list] = {"setting": self.settings()}
        for measure in ("drop_pts", "new_recall", "new_f1", "seconds", "top_drift"):
            out[measure] = [
                _mean(getattr(r, measure) for r in self.rows if r.setting == s)
                for s in out["setting"]
            ]
        return out

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "model": self.model,
            "new_labels": self.new_labels,
            "max_drop": self.max_drop,
            "rows": [asdict(r) for r in self.rows],
            "series": self.series(),
            "best": None if best is None else {"setting": best.setting, "seed": best.seed},
            "output": self.output,
        }

    def render(self) -> str:
        """A table (the best row marked ``*``), then one line on the choice."""
        head = (
            "",
            "setting",
            "seed",
            "drop pt",
            "passed",
            "new rec",
            "new F1",
            "seconds",
            "top drift",
        )
        lines = [_cells(head)]
        for r in self.rows:
            lines.append(
                _cells(
                    (
                        "*" if r.best else "",
                        r.setting,
                        r.seed,
                        f"{r.drop_pts:.2f}",
                        "yes" if r.passed else "NO",
                        f"{r.new_recall:.3f}",
                        f"{r.new_f1:.3f}",
                        f"{r.seconds:.1f}",
                        "inf" if r.top_drift is None else f"{r.top_drift:.3g}",
                    )  # fmt: skip
                )
            )
        best = self.best
        if best is not None and best.passed:
            lines.append(
                f"best trade-off (*): {_describe(best.setting)}, seed {best.seed}: new-label F1 "
                f"{best.new_f1:.3f} with an old-label drop of {best.drop_pts:.2f} pt "
                f"(allowed {self.max_drop:g})"
            )
        elif best is not None:
            lines.append(
                f"no setting passed the old-label check (drop <= {self.max_drop:g} pt); the "
                f"smallest drop (*): {_describe(best.setting)}, seed {best.seed}, "
                f"{best.drop_pts:.2f} pt"
            )
        if self.output:
            lines.append(f"wrote {self.output}")
        return "\n".join(lines)


def _describe(setting: str) -> str:
    if setting == ALL:
        return "everything trained (--freeze none)"
    return f"--train-layers {setting}"


def _tick(setting: str) -> str:
    return {"all": "all", "1": "1 block"}.get(setting, f"{setting} blocks")


def _cells(cells) -> str:
    widths = (1, 7, 4, 7, 6, 7, 6, 7, 9)
    return "  ".join(str(c).rjust(w) if i > 2 else str(c).ljust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()  # fmt: skip


@dataclass
class _Inputs:
    """What every run of a sweep shares: the model (never trained itself), its task, its data
    and caches."""

    model: Any
    tokenizer: Any
    task: Any
    data: list
    replay: list
    holdout: list
    old_labels: list[str]
    trained_labels: list[str]
    head_paths: list[str]
    added: list[str]
    record: dict[str, Any]
    feature_cache: dict = field(default_factory=dict)
    hidden_caches: dict[int, dict] = field(default_factory=dict)


def sweep(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    *,
    replay: str | os.PathLike | None = None,
    holdout: str | os.PathLike,
    layers: str | Sequence[int | str],
    seeds: int = 1,
    options: TrainOptions | None = None,
    add: bool = False,
    tolerance: Tolerance | None = None,
    columns: Columns | None = None,
    head_path: str | Sequence[str] | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    output: str | os.PathLike | None = None,
    **legacy: Any,
) -> SweepReport:
    """Train ``data`` once per setting of ``layers`` and seed, and compare the runs.

    The model and the files are read once; each run trains a fresh copy through
    :func:`~headsurgeon.train.train_model`. Nothing is written unless ``output`` is given: then
    the best run's model, atomically, with a ``train`` event that notes the sweep.

    Args:
        model_dir: a classifier saved with ``save_pretrained`` (with its preprocessor).
        data, replay, holdout: the new labels' examples, old ones to replay, the check's
            holdout: files (or folders of images or clips) as ``train`` reads them.
        layers: ``"0,1,2,all"`` or ``[0, 1, 2, "all"]``: K top blocks unfrozen (``0``: the
            head and the neck on cached features) or ``all`` (``--freeze none``).
        seeds: runs per setting, seeds ``options.seed`` .. ``options.seed + seeds - 1``.
        options: the other :class:`~headsurgeon.train.TrainOptions` (``seeds`` must be 1).
        add: first add the data's labels the model does not have (as ``train --add``).
        tolerance, columns: the check's :class:`~headsurgeon.gate.Tolerance` (default
            ``max_drop``: the task's) and the files' :class:`~headsurgeon.data.Columns`.
        head_path, trust_remote_code, allow_pickle: as :func:`headsurgeon.train.folders.train`.
        output: a new folder for the best run's model (``None``: nothing is written).
        **legacy: ``max_drop=``, ``max_label_drop=``: deprecated, set on ``tolerance``.

    Returns:
        a :class:`SweepReport` (``render()``, ``to_dict()``; ``best`` is the chosen run).

    Raises:
        OptionsError: bad ``layers`` (or K beyond the blocks), ``seeds``, ``options.seeds``, or
            keyword. DataError, CheckpointError: as ``train``. GateFailedError: with
            ``output``, no run passed the check (nothing is written).

    Example:
        >>> report = sweep("grown/", "new.csv", holdout="holdout.csv", layers="0,1,2,all")
    """
    columns, tolerance = bundles(sweep, legacy, columns, tolerance, TOLERANCE)
    files = (data, replay, holdout)
    src, runs, settings = _checked(model_dir, output, layers, seeds, options, tolerance)
    inputs = _load(src, files, add, columns, head_path, trust_remote_code, allow_pickle)
    _check_blocks(inputs, settings)
    if tolerance.max_drop is None:  # the task's default: points of accuracy, of entity F1...
        tolerance = replace(tolerance, max_drop=inputs.task.default_max_drop())
    report = SweepReport(str(model_dir), [], tolerance.max_drop)
    best = _run_all(inputs, runs, report, tolerance, runs[0][1].progress, output)
    if output is not None:
        refs = _file_refs(inputs, *files)  # names and hashes, no local paths
        report.output = str(_write_best(inputs, src, output, report, *best, refs))
    return report


def _checked(model_dir, output, layers, seeds, options, tolerance: Tolerance):
    """``(model folder, runs, settings)``, every argument checked before any work.

    Raises:
        OptionsError: a bad ``layers``, ``seeds``, ``options`` or tolerance; CheckpointError:
            an ``output`` that may not be written.
    """
    from .atomic import check_output
    from .gate import check_max_drop

    settings = parse_layers(layers if isinstance(layers, str) else ",".join(map(str, layers)))
    runs = _runs(settings, seeds, options or TrainOptions())
    check_max_drop(tolerance.max_drop, tolerance.max_label_drop)
    src = Path(model_dir)
    if output is not None:
        check_output(src, Path(output), in_place=False)
    return src, runs, settings


def _runs(settings: list[Setting], seeds, options: TrainOptions) -> list[tuple]:
    """``(setting, options)`` of every run: each setting, ``seeds`` seeds each.

    Raises:
        OptionsError: ``seeds < 1`` or ``options.seeds > 1``.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise OptionsError(f"--seeds must be a number >= 1, got {seeds!r}")
    if options.seeds != 1:
        raise OptionsError(
            f"sweep trains each seed as its own run: pass seeds={options.seeds} to sweep "
            "(--seeds), not TrainOptions.seeds"
        )
    return [(s, s.options(options, options.seed + i)) for s in settings for i in range(seeds)]


def _run_all(inputs: _Inputs, runs: list, report: SweepReport, tolerance, progress, output):
    """Train every run into ``report``'s rows and mark the best; ``(outcome, options)`` of the
    best run when it is to be written (``output``), else ``None``."""
    best_row, best = None, None
    for setting, run_options in _announced(runs, progress):
        row, outcome = _run(inputs, setting, run_options, tolerance)
        report.rows.append(row)
        report.new_labels = list(outcome.report.new_labels)
        if best_row is None or row.key() > best_row.key():
            best_row = row
            best = (outcome, run_options) if output is not None else None  # kept to write
    best_row.best = True
    return best


def _file_refs(inputs: _Inputs, data, replay, holdout) -> dict[str, Any]:
    """The ``data``/``replay``/``holdout`` fields of the ``train`` event the best run records."""
    from .record import file_ref

    return {
        "data": file_ref(data, len(inputs.data)),
        "replay": file_ref(replay or None, len(inputs.replay)),
        "holdout": file_ref(holdout, len(inputs.holdout)),
    }


def _announced(runs: list, progress: bool):
    """The runs, as a :class:`~headsurgeon.progress.Step` (``sweep``, counting runs) that
    notes each run before it trains: which one, n of N, the time so far and what is left."""
    from .progress import each

    def name(run) -> str:
        return f"{_describe(run[0].name)}, seed {run[1].seed}"

    return each(runs, "sweep", "runs", name=name, enabled=progress)


def _load(src, files, add, columns, head_path, trust_remote_code, allow_pickle):
    """Read the files once and load the model (grown by ``add``) and its preprocessor once."""
    from . import labels as _labels
    from . import record as _record
    from .locate import locate_head
    from .models import load_model, read_config
    from .surgery import add_labels
    from .tasks import task_for_config
    from .train.folders import DataFiles

    config = read_config(src)
    labels = _labels.labels_of(config)
    task = task_for_config(config, str(src))
    examples, replayed, held, added = DataFiles(*files).read(task, labels, add, columns)
    record = _record.record_for(src, labels)
    old = _record.old_labels(record, labels)
    tokenizer = task.preprocessor(src, trust_remote_code)
    model = load_model(src, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    if added:
        add_labels(model, added, init="mean", head_path=head_path)
        _record.add_event(record, "add-label", labels=added, init="imprint", by="sweep --add")
    model.eval()
    paths = list(locate_head(model, head_path).paths)
    trained = _record.trained_labels(record)
    return _Inputs(
        model, tokenizer, task, examples, replayed, held, old, trained, paths, added, record
    )


def _encoder_blocks(model, head_paths) -> int:
    """How many encoder blocks ``--train-layers`` chooses from: the longest list of modules of
    one class outside the head (as training finds them); 0 when there is none."""
    import torch

    best = 0
    for name, module in model.named_modules():
        if any(name == p or name.startswith(p + ".") for p in head_paths):
            continue
        if isinstance(module, torch.nn.ModuleList) and len({type(m) for m in module}) == 1:
            best = max(best, len(module))
    return best


def _check_blocks(inputs: _Inputs, settings: list[Setting]) -> None:
    """Refuse a K beyond the model's blocks before anything trains."""
    blocks = _encoder_blocks(inputs.model, inputs.head_paths)
    for s in settings:
        if s.train_layers is not None and s.train_layers > blocks:
            raise OptionsError(
                f"--layers {s.train_layers} is more than the {blocks} encoder blocks of "
                f"{type(inputs.model).__name__}: pass numbers from 0 to {blocks}, or {ALL}"
            )


def _run(inputs: _Inputs, setting: Setting, options: TrainOptions, tolerance: Tolerance):
    """Train a fresh copy of the model for one setting and seed: ``(row, outcome)``."""
    from .train import train_model

    start = time.perf_counter()
    model = copy.deepcopy(inputs.model)
    hidden = (
        None
        if setting.train_layers is None
        else inputs.hidden_caches.setdefault(setting.train_layers, {})
    )
    logger.info("sweep: training %s, seed %d", _describe(setting.name), options.seed)
    outcome = train_model(
        model,
        inputs.tokenizer,
        inputs.data,
        replay=inputs.replay,
        holdout=inputs.holdout,
        options=options,
        old_labels=inputs.old_labels,
        trained_labels=inputs.trained_labels,
        tolerance=tolerance,
        head_path=inputs.head_paths,
        feature_cache=inputs.feature_cache,
        hidden_cache=hidden,
    )
    seconds = time.perf_counter() - start
    check = outcome.report
    metrics = [check.new_label_metrics[n] for n in check.new_labels]
    drift = drift_by_group(inputs.model, outcome.model, inputs.head_paths, len(inputs.old_labels))
    blocks = [g for g in drift if g.startswith("block ")]
    row = SweepRow(
        setting=setting.name,
        seed=options.seed,
        drop_pts=round(check.drop_pts, 4),
        passed=check.passed,
        new_recall=round(statistics.fmean(m["recall"] for m in metrics), 4) if metrics else 0.0,
        new_f1=round(statistics.fmean(m["f1"] for m in metrics), 4) if metrics else 0.0,
        seconds=round(seconds, 2),
        top_drift=drift[max(blocks, key=lambda g: int(g.split()[1]))] if blocks else 0.0,
        drift=drift,
        steps=sum(r["steps"] for r in outcome.stats["seeds"]),
    )
    return row, outcome


def drift_by_group(
    parent, child, head_paths: Sequence[str], old_rows: int
) -> dict[str, float | None]:
    """``||Δθ|| / ||θ||`` of ``child`` against ``parent`` (two models of the same shapes, in
    memory) per layer group, grouped and measured as :func:`headsurgeon.diff.diff_checkpoints`
    does: float64, the head over its first ``old_rows`` rows (the parent's labels).

    Returns:
        ``{group: relative change}``, bottom to top (embeddings, block i, neck, head).
    """
    from .diff import _group, _group_order, _Sums  # the diff's own groups and measure

    before = parent.state_dict()
    sums: dict[str, _Sums] = {}
    for name, after in child.state_dict().items():
        base = before.get(name)
        if base is None or base.shape != after.shape or not after.is_floating_point():
            continue
        group = _group(name, head_paths)
        a, b = base.detach().cpu().double(), after.detach().cpu().double()
        if group == "head":
            a, b = a[:old_rows], b[:old_rows]
        d = b - a
        part = _Sums(float((a * a).sum()), float((d * d).sum()), float(d.abs().max()), a.equal(b))
        sums.setdefault(group, _Sums()).add(part)
    return {g: _finite(sums[g].rel) for g in sorted(sums, key=_group_order)}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no infinity (diff reports None too)


def _mean(values) -> float | None:
    """The mean of the values, ``None`` when one is ``None`` (an infinite drift)."""
    values = list(values)
    return None if any(v is None for v in values) else statistics.fmean(values)


def _write_best(inputs: _Inputs, src: Path, output, report: SweepReport, outcome, options,
                files) -> Path:  # fmt: skip
    """Write the best run's model to ``output`` atomically, with the ``train`` event ``train``
    records plus a ``sweep`` note (every run, the chosen one); refuse when it failed the check."""
    from . import record as _record
    from .checkpoint import write_model
    from .labels import labels_of

    best = report.best
    old = set(inputs.old_labels)
    if not best.passed:
        raise GateFailedError(
            f"no setting passed the old-label check (drop <= {report.max_drop:g} pt; the "
            f"smallest, {_describe(best.setting)}, dropped {best.drop_pts:.2f} pt): {output} not "
            "written; try fewer blocks, more replay (--replay-per-label) or a lower --lr",
            report=report,
        )
    stats = outcome.stats
    _record.add_event(
        inputs.record,
        "train",
        options=options.to_dict(),
        **files,
        trained_labels=[n for n in labels_of(outcome.model.config) if n not in old],
        **{k: v for k, v in stats.items() if k != "seeds"},
        seeds=[{k: v for k, v in r.items() if k != "history"} for r in stats["seeds"]],
        check={"passed": outcome.report.passed, **outcome.report.to_dict()},
        sweep={
            "chosen": {"setting": best.setting, "seed": best.seed},
            "runs": [{k: v for k, v in asdict(r).items() if k != "drift"} for r in report.rows],
        },
    )
    outcome.model.to("cpu")
    return write_model(outcome.model, inputs.record, src, output)


def plot_sweep(report: SweepReport, path: str | os.PathLike) -> Path:
    """Draw the sweep into ``path`` (PNG): per setting, the old-label drop against the check's
    tolerance (top) and the new labels' F1 (bottom), each seed a dot and the mean a line; the
    wall time is written under each setting, the best trade-off ringed.

    Raises:
        OptionsError: matplotlib is not installed.
    """
    from .plot import require_matplotlib

    plt = require_matplotlib()
    series = report.series()
    names = series["setting"]
    xs = {s: i for i, s in enumerate(names)}
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6.5, 5.2))
    for ax, measure, label in (
        (top, "drop_pts", "old-label drop (pt)"),
        (bottom, "new_f1", "new-label F1"),
    ):
        ax.plot(range(len(names)), series[measure], color="tab:blue", marker="o", zorder=2)
        ax.scatter([xs[r.setting] for r in report.rows], [getattr(r, measure) for r in report.rows],
                   color="tab:blue", alpha=0.4, s=14, zorder=2)  # fmt: skip
        best = report.best
        ax.scatter([xs[best.setting]], [getattr(best, measure)], s=160, facecolors="none",
                   edgecolors="tab:green", linewidths=2, zorder=3, label="best trade-off")  # fmt: skip
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    top.axhline(
        report.max_drop, color="tab:red", linestyle="--", label=f"tolerance {report.max_drop:g} pt"
    )
    top.legend(fontsize=8, loc="best")
    bottom.set_ylim(-0.02, 1.05)
    ticks = [_tick(n) + f"\n{sec:.1f} s" for n, sec in zip(names, series["seconds"], strict=True)]
    bottom.set_xticks(range(len(names)), ticks, fontsize=8)
    bottom.set_xlabel("top encoder blocks trained (all: --freeze none), mean wall time per run")
    top.set_title(
        f"sweep: {Path(report.model).name}, new: {', '.join(report.new_labels)}", fontsize=9
    )
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
