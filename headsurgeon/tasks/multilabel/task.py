"""Multi-label text classification: any number of labels per text (``...ForSequenceClassification``
saved with ``problem_type: multi_label_classification``).

:class:`MultiLabelTask` is what ``train``, ``check`` and ``sweep`` ask of such a model.

- Data: :mod:`.data` (a ``labels`` column, ``;``-separated; JSONL lists; no label allowed).
- Targets: a multi-hot row per text, trained with BCE-with-logits (as transformers' own loss for
  this ``problem_type``), each (text, label) weighed on its own. **Partial annotation** by
  default (``annotated="new"``): the new data was annotated for the new labels only, so its old
  labels' targets are the parent's sigmoid outputs (what the parent would have said: the
  multi-label twin of NER's ``--annotated new``), except the old labels a row does list (1); the
  replayed old texts are every new label's negatives, their old labels' targets the gold pulled
  towards the parent's outputs (``(gold + d * parent) / (1 + d)`` with ``d = distill``: BCE is
  linear in its target, so this is the gold's loss plus ``d`` times a distillation to the
  parent, as single-label training adds one). ``annotated="all"``: a label a new row does not
  list is a negative.
- Decisions: each label at its threshold (config ``label_thresholds``, 0.5 when unset); the new
  labels' biases are calibrated on held-out old texts (:mod:`.thresholds`).
- The gate: old-label micro-F1 (:mod:`.gate`).

No torch at import.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from typing import Any

from ...data import LABEL_COLUMN, Columns
from ...errors import DataError
from .. import MULTILABEL
from .. import rows as _rows
from ..sniff import check_data_task
from .data import LABELS_COLUMN, LabelledText, check_labelled, joined_by, read_labelled
from .gate import DEFAULT_MAX_DROP, MultiLabelReport, compare_multilabel, thresholds_of
from .thresholds import ThresholdCalibration

logger = logging.getLogger(__name__)

#: the multi-label task's values of the ``TrainOptions`` fields left ``None``
OPTION_DEFAULTS = {
    "train_layers": 1, "new_weight": 10.0, "replay_per_label": 40, "calibrate_per_label": 20,
    "epochs": 4.0,
}  # fmt: skip
#: texts held out of the replay to calibrate on, at least (as single-label text's)
MIN_HELD_OUT = 1000


class MultiLabelTask:
    """Any number of labels per text (see the module docstring); implements
    :class:`~headsurgeon.tasks.base.Task`."""

    name = MULTILABEL
    unit = "texts"
    check_name = MultiLabelReport.NAME
    report_type = MultiLabelReport
    calibrates = True
    replays_confusable = False
    batches_by_length = True
    #: the parent's outputs on the new texts are their old labels' targets
    needs_train_features = True
    pick = None

    def default_max_drop(self) -> float:
        """The gate's default tolerance, in micro-F1 points."""
        return DEFAULT_MAX_DROP

    def defaults(self, old_labels: int | None = None, new_labels: int | None = None) -> dict:
        """:data:`OPTION_DEFAULTS`."""
        return dict(OPTION_DEFAULTS)

    # --- data ---------------------------------------------------------------------------

    def _reader(self, columns: Columns, option: str):
        label = None if columns.label == LABEL_COLUMN else columns.label
        sep = columns.label_sep

        def read(path):
            check_data_task(path, token_model=False, option=option)
            return read_labelled(path, text_column=columns.text, label_column=label, label_sep=sep)

        return read

    def read_data(self, files, labels, add, columns):
        """``(data, replay, holdout or None, labels to add)`` read from ``files``."""
        columns = Columns.of(columns)
        examples = self._reader(columns, "--data")(files.data)
        replayed = self._reader(columns, "--replay")(files.replay) if files.replay else []
        held = self._reader(columns, "--holdout")(files.holdout) if files.holdout else None
        names = dict.fromkeys(n for e in examples for n in e.labels)
        added = [n for n in names if n not in labels] if add else []
        joined = joined_by(added)
        if joined:  # --add would add "a|b" as one label: a wrong separator, not a new label
            raise DataError(
                f"{files.data}: --add would add {[n for n in added if joined in n][:3]}, which "
                f"look like labels joined by {joined!r}: pass --label-sep {joined!r}"
            )
        check_labelled(examples, labels + added, source=str(files.data))
        for role, path, rows in (("--replay", files.replay, replayed),
                                 ("--holdout", files.holdout, held or [])):  # fmt: skip
            only = f"{role} must hold only the model's labels"
            check_labelled(rows, labels + added, source=str(path), only_known=only)
        return examples, replayed, held, added

    def examples(self, rows, columns=None, labels=None, source: str = "data") -> list:
        """:class:`~.data.LabelledText` s of in-memory ``rows``: themselves, ``(text,
        labels)`` tuples, or dicts with the text's column and ``labels`` (else the label
        column); labels as a list, a string separated by ``columns.label_sep``, or ``None``
        (no label).

        Raises:
            DataError: a row of another shape, an empty text, an invalid label (naming the row).
        """
        columns = Columns.of(columns)
        out = []
        for number, row in enumerate(rows, 1):
            if isinstance(row, LabelledText):
                out.append(row)
                continue
            at = _rows.where(source, number)
            column = columns.label
            if isinstance(row, dict) and column == LABEL_COLUMN and LABELS_COLUMN in row:
                column = LABELS_COLUMN
            advice = (
                "; choose them with --text-column/--label-column "
                "(Python: columns=Columns(text=..., label=...))"
            )
            text, value = _rows.fields(row, (columns.text, column), at, advice=advice)
            names = _rows.names(value, at, column, columns.label_sep)
            out.append(LabelledText(_rows.text(text, at, columns.text), names))
        return out

    def check_data(self, data, replay, holdout, labels) -> None:
        """Refuse examples of labels the model does not have."""
        for name, rows in (("data", data), ("replay", replay), ("holdout", holdout or [])):
            if any(not isinstance(e, LabelledText) for e in rows):
                raise DataError(
                    f"{name}: a multi-label model takes LabelledText(text, labels) examples"
                )
            only = None if name == "data" else f"{name} must hold only the model's labels"
            check_labelled(rows, labels, source=name, only_known=only)

    def read_holdout(self, holdout, parent_labels, child_labels, columns) -> list:
        """``check``'s holdout (a file or examples), holding only the two models' labels."""
        path = isinstance(holdout, (str, os.PathLike))
        examples = (
            self._reader(Columns.of(columns), "--holdout")(holdout) if path else list(holdout)
        )
        if not examples:
            raise DataError("the holdout holds no examples")
        source = str(holdout) if path else "the holdout"
        known = list(dict.fromkeys([*parent_labels, *child_labels]))
        check_labelled(
            examples, known, source=source, only_known=f"{source} must hold only the models' labels"
        )
        if not any(set(e.labels) & set(parent_labels) for e in examples):
            raise DataError(f"{source} has no example of an old label: nothing to check")
        return examples

    def key(self, example) -> str:
        """An example's key: its text."""
        return example.text

    def labels_in(self, example) -> set[str]:
        """The labels an example carries."""
        return set(example.labels)

    def hold_out(self, replay, old_labels, per_label, seed):
        """``(held out, rest)``: a seeded slice of the replay to calibrate on (``per_label`` per
        old label, at least :data:`MIN_HELD_OUT`, at most a third)."""
        if per_label <= 0:
            return [], list(replay)
        want = max(per_label * len(old_labels), MIN_HELD_OUT)
        size = min(want, len(replay) // 3)
        rng = random.Random(f"calibration-{seed}")
        chosen = set(rng.sample(range(len(replay)), size))
        held = [e for i, e in enumerate(replay) if i in chosen]
        return held, [e for i, e in enumerate(replay) if i not in chosen]

    def sample_replay(self, rest, old_labels, per_label, seed, whole=()):
        """Up to ``per_label`` texts of each old label, and as many texts with no label (every
        replayed text is a negative of the new labels), seeded; every text with 0."""
        if not per_label:
            return list(rest)
        rng = random.Random(seed)
        chosen: dict[int, None] = {}
        for name in [*old_labels, None]:
            idx = [i for i, e in enumerate(rest) if (name in e.labels if name else not e.labels)]
            chosen.update(dict.fromkeys(sorted(rng.sample(idx, min(per_label, len(idx))))))
        return [rest[i] for i in sorted(chosen)]

    # --- preprocessing, rows, batches ---------------------------------------------------

    def preprocessor(self, model_dir, trust_remote_code: bool = False):
        """The tokenizer saved in ``model_dir``."""
        from ...predict import load_text_tokenizer

        return load_text_tokenizer(model_dir, trust_remote_code)

    def tokenizer(self, tokenizer):
        """The model's tokenizer as it is."""
        return tokenizer

    def stack(self, values: Sequence):
        """One feature vector per text, stacked."""
        import torch

        return torch.stack(list(values))

    def train_features(self, store, keys: list[str]):
        """The training texts' features, stacked."""
        return store.of(keys)

    def rows(self, plan, train_rows, train_x, train_h) -> list[dict]:
        """Training rows: a target and a weight per label (see the module docstring), features
        or the text (+ cached block inputs)."""
        import torch

        labels, options = plan.labels, plan.options
        new_ids = [labels.index(n) for n in plan.new_labels]
        partial, distill = options.annotated == "new", options.distill
        parent = torch.sigmoid(plan.parent(train_x)) if train_x is not None else None
        rows = []
        for i, e in enumerate(train_rows):
            target = torch.tensor([float(n in e.labels) for n in labels])
            weight = torch.ones(len(labels))
            if plan.task.key(e) in plan.data_keys:  # a new text (annotated for new labels)
                weight[new_ids] = options.new_weight
                if partial and parent is not None:
                    listed = target[plan.old_ids] > 0
                    target[plan.old_ids] = torch.where(listed, 1.0, parent[i])
            elif distill and parent is not None:  # a replayed text: gold, pulled to the parent
                gold = target[plan.old_ids]
                target[plan.old_ids] = (gold + distill * parent[i]) / (1 + distill)
            row = {"multi_target": target, "target_weight": weight}
            if plan.features_only:
                row["features"] = train_x[i]
            else:
                row["text"] = self.key(e)
            if train_h is not None:
                row["hidden"] = train_h[i]
            rows.append(row)
        return rows

    def labelled_features(self, examples, x) -> dict[str, Any]:
        """Features of the examples of each label (to imprint new rows)."""
        out: dict[str, list[int]] = {}
        for i, e in enumerate(examples):
            for name in e.labels:
                out.setdefault(name, []).append(i)
        return {n: x[idx] for n, idx in out.items()}

    def collator(self, tokenizer, max_length: int):
        """Batch rows: stack features, or tokenize texts with dynamic padding; targets too."""
        from ..text import make_collator

        texts = make_collator(tokenizer, max_length)

        def collate(rows: list[dict]) -> dict:
            import torch

            plain = [{k: v for k, v in r.items() if k not in _TARGETS} | {"label": 0, "weight": 1.0}
                     for r in rows]  # fmt: skip
            batch = texts(plain)
            batch.pop("labels"), batch.pop("weight")
            if "multi_target" in rows[0]:
                batch["multi_target"] = torch.stack([r["multi_target"] for r in rows])
                batch["target_weight"] = torch.stack([r["target_weight"] for r in rows])
            return batch

        return collate

    def from_batch(self, logits, batch):
        """One row of logits per text."""
        return logits

    # --- predict, score, gate, calibrate ------------------------------------------------

    def predict(self, model, tokenizer, examples, options, desc: str | None = None):
        """The whole model's logits of ``examples``."""
        from ...predict import predict_logits

        return predict_logits(
            model, tokenizer, [e.text for e in examples], batch_size=max(options.batch_size, 64),
            max_length=options.max_length, progress=options.progress and desc is not None,
            desc=desc or "",
        ).float().cpu()  # fmt: skip

    def scorer(self, plan, holdout):
        """Micro-F1 over every label of logits, each at its threshold."""
        import torch

        labels = plan.labels
        gold = torch.tensor([[n in e.labels for n in labels] for e in holdout], dtype=torch.bool)
        t = torch.tensor(thresholds_of(plan.model.config, labels))

        def score(logits) -> float:
            pred = torch.sigmoid(logits.float()) >= t
            tp, fp, fn = (gold & pred).sum(), (~gold & pred).sum(), (gold & ~pred).sum()
            denom = int(2 * tp + fp + fn)
            return 2 * int(tp) / denom if denom else 1.0

        return score

    def report(self, plan, holdout, parent_logits, child_logits, tolerance):
        """The multi-label gate on the holdout (the parent's logits over the old labels)."""
        thresholds = thresholds_of(plan.model.config, plan.labels)
        parent_t = [thresholds[i] for i in plan.old_ids]
        return compare_multilabel(
            parent_logits, child_logits, holdout, plan.old_labels, plan.labels,
            (parent_t, thresholds), max_drop=tolerance.max_drop,
            max_label_drop=tolerance.max_label_drop,
        )  # fmt: skip

    def check(self, parent, child, examples, parent_labels, child_labels, tolerance, *, load,
              **run):  # fmt: skip
        """Both models loaded, one batched pass for both when they differ only in their
        heads, then the multi-label gate at each model's thresholds."""
        from ...predict import predict_pair

        parent, child = load(parent), load(child)
        keys = [e.text for e in examples]
        logits = predict_pair(parent, child, keys, **run, desc="scoring holdout")
        thresholds = tuple(
            thresholds_of(m.config, names)
            for (m, _), names in ((parent, parent_labels), (child, child_labels))
        )
        return compare_multilabel(
            *logits, examples, parent_labels, child_labels, thresholds,
            max_drop=tolerance.max_drop, max_label_drop=tolerance.max_label_drop,
        )  # fmt: skip

    def calibrator(self, plan):
        """The new labels' threshold calibration (:class:`~.thresholds.ThresholdCalibration`)."""
        thresholds = thresholds_of(plan.model.config, plan.labels)
        return ThresholdCalibration(plan.labels, plan.new_labels, plan.options, thresholds)

    def new_label_examples(self, plan, examples):
        """Not checked for multi-label models (``None``)."""
        return None


#: what a training row holds beside the model's inputs
_TARGETS = ("multi_target", "target_weight")
