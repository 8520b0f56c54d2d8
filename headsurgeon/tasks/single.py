"""What every single-label task shares: one label per example, the accuracy gate.

A text, an image or an audio clip each carries one label, so the tasks of text, image and audio
classifiers (:class:`~.text.TextTask`, :class:`~.image.task.ImageTask`,
:class:`~.audio.task.AudioTask`) train, score and gate alike: training rows of a label and a
weight, features stacked one vector per example, holdout accuracy, the accuracy gate
(:mod:`.accuracy`) with its interval, the new labels' examples checked after training. They
differ in what an example is: how it is read, keyed, turned into model inputs (the
preprocessor and its view) and batched. :class:`OneLabelTask` holds the shared part; each task
subclasses it and adds its own (it is a helper below them, not a task: it is not registered).

No torch at import.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..data import Columns, check_labels, sample_replay, split_slice
from ..errors import DataError
from . import rows as _rows
from .accuracy import DEFAULT_MAX_DROP, CheckReport, compare, old_indices

logger = logging.getLogger(__name__)

#: a single-label task's values of the ``TrainOptions`` fields left ``None``
OPTION_DEFAULTS = {
    "train_layers": 1, "new_weight": 10.0, "replay_per_label": 20, "calibrate_per_label": 20,
    "epochs": 4.0,
}  # fmt: skip
#: adding several labels at once trains this many epochs (ten new banking intents: recall
#: 0.78 -> 0.86 at 4 -> 8 epochs, five stackoverflow topics 0.78 -> 0.79, every draw within its
#: gate; one new label lost precision with 8: benchmarks/incremental.py)
SEVERAL_NEW_EPOCHS = 8.0
#: the default per-label counts (replayed, held out for calibration) rise so that each comes to
#: at least this many old examples in all. With few broad labels (15 stackoverflow topics) 20
#: per label gave 300 held-out examples, too few to tell a 0.5 pt drop (one example is 0.33 pt)
#: and too few replayed to hold the old labels (benchmarks/incremental.py)
MIN_OLD_EXAMPLES = 1000
#: the per-label counts MIN_OLD_EXAMPLES raises
_SCALED = ("replay_per_label", "calibrate_per_label")


class OneLabelTask:
    """The shared part of the single-label tasks (see the module docstring).

    A subclass sets ``name``, ``unit`` and ``example_type`` and implements ``key``,
    ``tokenizer``, ``collator``, ``preprocessor``, ``read_data`` and ``read_holdout`` (with
    :meth:`_read_files` and :meth:`_read_holdout`), ``input_column`` and ``make_example``
    (for :meth:`examples`).
    """

    #: the class of the task's examples (rows of other types are converted by :meth:`examples`)
    example_type: type

    check_name = CheckReport.NAME
    report_type = CheckReport
    calibrates = True
    replays_confusable = True
    #: training rows of cached block inputs go in batches of similar length (less padding;
    #: measured on the incremental benchmark's 20 draws)
    batches_by_length = True
    needs_train_features = False
    #: one vector per example: :func:`~headsurgeon.train.features.head_inputs`' own rule
    pick = None

    def default_max_drop(self) -> float:
        """The accuracy gate's default tolerance (:data:`~.accuracy.DEFAULT_MAX_DROP`)."""
        return DEFAULT_MAX_DROP

    def defaults(self, old_labels: int | None = None, new_labels: int | None = None) -> dict:
        """:data:`OPTION_DEFAULTS`, the per-label counts raised to :data:`MIN_OLD_EXAMPLES` in
        all with ``old_labels`` (their number), and :data:`SEVERAL_NEW_EPOCHS` with more than
        one new label."""
        defaults = dict(OPTION_DEFAULTS)
        if old_labels:
            least = -(-MIN_OLD_EXAMPLES // old_labels)  # ceil
            for name in _SCALED:
                defaults[name] = max(defaults[name], least)
        if (new_labels or 0) > 1:
            defaults["epochs"] = SEVERAL_NEW_EPOCHS
        return defaults

    # --- data ---------------------------------------------------------------------------

    def input_column(self, columns: Columns) -> str:
        """The column of the examples' inputs (``columns.text`` for a text classifier)."""
        raise NotImplementedError

    def make_example(self, value, label: str, source: str, number: int, at: str):
        """The example of a row's input ``value`` and ``label`` (row ``number`` of
        ``source``, named ``at`` in messages)."""
        raise NotImplementedError

    def examples(self, rows, columns=None, labels=None, source: str = "data") -> list:
        """The task's examples of in-memory ``rows``: its own examples, ``(input, label)``
        tuples, or dicts with the input's and the label's columns (``columns``: a
        :class:`~headsurgeon.data.Columns`); ``labels`` unused (a label is one name).

        Raises:
            DataError: a row of another shape, an empty input, a missing or invalid label
                (naming the row).
        """
        columns = Columns.of(columns)
        column = self.input_column(columns)
        name = self.path_param
        advice = (
            f"; choose them with --{name}-column/--label-column "
            f"(Python: columns=Columns({name}=..., label=...))"
        )
        out = []
        for number, row in enumerate(rows, 1):
            if isinstance(row, self.example_type):
                out.append(row)
                continue
            at = _rows.where(source, number)
            value, name = _rows.fields(row, (column, columns.label), at, advice=advice)
            label = _rows.label(name, at, columns.label)
            out.append(self.make_example(value, label, source, number, at))
        return out

    @property
    def path_param(self) -> str:
        """The :class:`~headsurgeon.data.Columns` field naming the input column (``text``)."""
        return "text"

    def _read_files(self, files, labels, add, read, check=check_labels):
        """``(data, replay, holdout or None, labels to add)``: ``read(path)`` reads each of
        ``files`` (a :class:`~headsurgeon.train.folders.DataFiles`), ``check(examples, known,
        source=, only_known=)`` refuses labels the model does not have (and will not get)."""
        examples = read(files.data)
        replayed = read(files.replay) if files.replay else []
        held = read(files.holdout) if files.holdout else None
        names = dict.fromkeys(e.label for e in examples)
        added = [n for n in names if n not in labels] if add else []
        check(examples, labels + added, source=str(files.data))
        for role, path, rows in (
            ("--replay", files.replay, replayed),
            ("--holdout", files.holdout, held or []),
        ):
            only = f"{role} must hold only the model's labels"
            check(rows, labels + added, source=str(path), only_known=only)
        return examples, replayed, held, added

    def _read_holdout(self, holdout, parent_labels, child_labels, read) -> list:
        """``check``'s holdout: ``read(path)`` of a file (or folder), or the given examples,
        once they hold only the two models' labels and some old one.

        Raises:
            DataError: no example, an unknown label, no example of an old label.
        """
        path = isinstance(holdout, (str, os.PathLike))
        examples = read(holdout) if path else list(holdout)
        if not examples:
            raise DataError("the holdout holds no examples")
        source = str(holdout) if path else "the holdout"
        old_indices([e.label for e in examples], parent_labels, child_labels, source)
        return examples

    def check_data(self, data, replay, holdout, labels) -> None:
        """Refuse examples of labels the model does not have (replay and holdout: old ones)."""
        check_labels(data, labels, source="data")
        only = "{} must hold only the model's labels"
        check_labels(replay, labels, source="replay", only_known=only.format("replay"))
        if holdout is not None:
            check_labels(holdout, labels, source="holdout", only_known=only.format("holdout"))

    def labels_in(self, example) -> set[str]:
        """The one label an example teaches."""
        return {example.label}

    def hold_out(self, replay, old_labels, per_label, seed):
        """``per_label`` examples of each old label held out to calibrate on
        (:func:`~headsurgeon.data.split_slice`)."""
        return split_slice(replay, old_labels, per_label, seed)

    def calibrator(self, plan):
        """The bias calibration against the accuracy gate
        (:class:`~headsurgeon.train.calibration.Calibration`)."""
        from ..train.calibration import Calibration

        return Calibration(plan.labels, plan.new_labels, plan.options, plan.tolerance)

    def sample_replay(self, rest, old_labels, per_label, seed, whole=()):
        """``per_label`` examples of each old label (:func:`~headsurgeon.data.sample_replay`)."""
        return sample_replay(rest, old_labels, per_label, seed, whole=whole)

    # --- features and rows --------------------------------------------------------------

    def stack(self, values: Sequence):
        """One feature vector per example, stacked."""
        import torch

        return torch.stack(list(values))

    def train_features(self, store, keys: list[str]):
        """The training examples' features, stacked (``[examples, hidden]``)."""
        return store.of(keys)

    def rows(self, plan, train_rows, train_x, train_h) -> list[dict]:
        """Training rows: label, weight, features or the example's key (under ``text``, where
        the collators read it) (+ cached block inputs, parent logits)."""
        new_set, labels, options = set(plan.new_labels), plan.labels, plan.options
        repeats = options.new_repeats
        rows = []
        for i, e in enumerate(train_rows):
            new = e.label in new_set
            row = {
                "label": labels.index(e.label),
                "weight": options.new_weight / repeats if new else 1.0,
            }
            if plan.features_only:
                row["features"] = train_x[i]
            else:
                row["text"] = self.key(e)
            if train_h is not None:
                row["hidden"] = train_h[i]
            if options.distill > 0:
                row["parent_logits"] = plan.parent(train_x[i : i + 1])[0]
            rows += [row] * (repeats if new else 1)
        return rows

    def labelled_features(self, examples, x) -> dict[str, Any]:
        """Features of the examples of each label (for imprinting)."""
        out: dict[str, list[int]] = {}
        for i, e in enumerate(examples):
            out.setdefault(e.label, []).append(i)
        return {n: x[idx] for n, idx in out.items()}

    def from_batch(self, logits, batch):
        """The logits a batch scores (one row per example here)."""
        return logits

    # --- predict, score, gate -----------------------------------------------------------

    def predict(self, model, tokenizer, examples, options, desc: str | None = None):
        """The whole model's logits of ``examples`` (one batched pass over their keys through
        ``tokenizer``, the task's view of the preprocessor); with ``desc`` (and
        ``options.progress``) the pass reports its progress under that name."""
        from ..predict import predict_logits

        keys = [self.key(e) for e in examples]
        return predict_logits(
            model, tokenizer, keys, batch_size=max(options.batch_size, 64),
            max_length=options.max_length, progress=options.progress and desc is not None,
            desc=desc or "",
        ).float().cpu()  # fmt: skip

    def scorer(self, plan, holdout) -> Callable[[Any], float]:
        """Holdout accuracy (every label) of logits."""
        import torch

        labels = plan.labels
        gold = torch.tensor([labels.index(e.label) for e in holdout])
        return lambda logits: (logits.argmax(-1) == gold).float().mean().item()

    def report(self, plan, holdout, parent_logits, child_logits, tolerance):
        """The accuracy gate on the holdout (the parent's logits over the old labels)."""
        return compare(
            parent_logits, child_logits, holdout, plan.old_labels, plan.labels,
            max_drop=tolerance.max_drop, max_label_drop=tolerance.max_label_drop,
        )  # fmt: skip

    def check(self, parent, child, examples, parent_labels, child_labels, tolerance, *, load,
              **run):  # fmt: skip
        """Both models loaded (``load``: source → model and preprocessor, viewed through
        :meth:`tokenizer`), one batched pass for both when they differ only in their heads
        (:func:`~headsurgeon.predict.predict_pair`), then the accuracy gate."""
        from ..predict import predict_pair

        parent, child = (self._viewed(load(source)) for source in (parent, child))
        logger.info("evaluating parent and child on %d holdout examples", len(examples))
        keys = [self.key(e) for e in examples]
        logits = predict_pair(parent, child, keys, **run, desc="scoring holdout")
        return compare(
            *logits, examples, parent_labels, child_labels,
            max_drop=tolerance.max_drop, max_label_drop=tolerance.max_label_drop,
        )  # fmt: skip

    def _viewed(self, loaded):
        model, preprocessor = loaded
        return model, self.tokenizer(preprocessor)

    def new_label_examples(self, plan, examples):
        """The examples of the new labels and their class ids."""
        new = set(plan.new_labels)
        mine = [e for e in examples if e.label in new]
        return mine, [plan.labels.index(e.label) for e in mine]


def label_batch(rows: list[dict]) -> dict:
    """The targets of a batch of single-label rows: ``labels``, ``weight`` and, with
    distillation, ``parent_logits``."""
    import torch

    batch = {
        "labels": torch.tensor([r["label"] for r in rows], dtype=torch.long),
        "weight": torch.tensor([r["weight"] for r in rows], dtype=torch.float32),
    }
    if "parent_logits" in rows[0]:
        batch["parent_logits"] = torch.stack([r["parent_logits"] for r in rows])
    return batch


def pad_stack(values: Sequence) -> Any:
    """Tensors of one shape but their first dimension (positions), zero-padded to the longest
    and stacked (``[batch, positions, ...]``)."""
    import torch

    longest = max(len(v) for v in values)
    if all(len(v) == longest for v in values):
        return torch.stack(list(values))
    out = values[0].new_zeros(len(values), longest, *values[0].shape[1:])
    for i, v in enumerate(values):
        out[i, : len(v)] = v
    return out
