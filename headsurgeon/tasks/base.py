"""The ``Task`` protocol: what ``train``, ``check``, ``sweep``, the card and ``push`` ask a task.

The generic machinery (:mod:`headsurgeon.train`, :mod:`headsurgeon.checks`,
:mod:`headsurgeon.sweep`, :mod:`headsurgeon.card`) runs one pipeline for every task and never
names one: it asks the model's :class:`Task` (:func:`headsurgeon.tasks.task_for`) how to read
and validate data, how to key and preprocess an example, what the training rows and batches
hold, how the head's input of an example is picked, how logits are predicted and scored, and
which gate judges the child (a :class:`GateReport`). A task is one module with one class, and
one line in :mod:`headsurgeon.tasks`' registry: :class:`~headsurgeon.tasks.text.TextTask`
(one label per text), :class:`~headsurgeon.tasks.multilabel.task.MultiLabelTask` (any number of
labels per text), :class:`~headsurgeon.tasks.token.task.TokenTask` (one tag per word),
:class:`~headsurgeon.tasks.image.task.ImageTask` (one label per image),
:class:`~headsurgeon.tasks.audio.task.AudioTask` (one label per clip).

Every batched pass (prediction, feature and block-input caching, training batches) runs on the
examples' keys through the task's view of the model's preprocessor (:meth:`Task.tokenizer`):
called like a tokenizer with a list of keys, it returns the model's inputs. A tokenizer is its
own view; other views (:class:`Inputs`) also say how long each input is and what stands in for
it when its block inputs are cached.

Here only types: nothing is imported at run time, no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol


class GateReport(Protocol):
    """What a task's old-label gate found, as :mod:`headsurgeon.checks` (``enforce``,
    ``record_check``), ``train``'s gate, ``sweep``, the plot and the card read it.

    The class attributes describe the gate for whoever reads its recorded dict (the card,
    ``push``): ``KIND`` (the dict's ``kind``; ``None``: none), ``NAME`` (``"old-label check"``),
    ``MEASURES`` (``(key, words)`` of the before/after measures), ``ABOUT`` (a sentence on how
    it scores, or ``None``), ``ROW``/``NEW`` (what a per-label row and a new label are called),
    ``COLUMNS`` (the card's names of the per-label columns), ``OLD_UNITS`` (what flips).
    """

    KIND: ClassVar[str | None]
    NAME: ClassVar[str]
    MEASURES: ClassVar[tuple[tuple[str, str], ...]]
    ABOUT: ClassVar[str | None]
    ROW: ClassVar[str]
    NEW: ClassVar[str]
    COLUMNS: ClassVar[dict[str, str]]
    OLD_UNITS: ClassVar[str]

    parent_labels: list[str]
    new_labels: list[str]
    passed: bool
    drop_pts: float
    max_drop: float
    max_label_drop: float | None
    per_label: list[dict[str, Any]]
    labels_beyond: list[str]
    flipped_to_new: int
    new_label_metrics: dict[str, dict[str, float]]

    @staticmethod
    def failure_of(check: dict[str, Any]) -> str | None:
        """Why a recorded check of this gate failed, in one sentence (``None``: no reason)."""

    @property
    def holdout_size(self) -> int:
        """The holdout examples (or sentences) the report scored."""

    def render(self, show: int = ...) -> str:
        """The readable report."""

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data."""

    def failure(self) -> str | None:
        """Why the check failed (``None`` when it passed)."""

    def worst(self, n: int = 3) -> list[dict[str, Any]]:
        """Up to ``n`` old labels that lost the most."""

    def chart(self) -> tuple[str, str]:
        """``(x-axis label, title)`` of the per-label chart."""


class Inputs(Protocol):
    """A task's view of a preprocessor other than a tokenizer (an image processor, a feature
    extractor): what the generic passes ask of it beside calling it. A tokenizer has none of
    these: its inputs are token sequences (``input_ids``, ``attention_mask``)."""

    #: the keys of the one-example pass that probes the blocks (:mod:`headsurgeon.train.blocks`)
    probe_keys: Sequence[str]
    #: what the passes' progress counts (``images``)
    unit: str

    def __call__(self, keys: Sequence[str], **kwargs) -> Any:
        """The model's inputs of the examples of ``keys`` (a ``BatchFeature``); tokenizer
        arguments (``padding``, ``max_length``...) are accepted and ignored."""

    def lengths(self, keys: Sequence[str]) -> list[int]:
        """How long each example's input is (batches of similar length pad little)."""

    def stand_in(self, keys: Sequence[str]) -> dict[str, Any]:
        """Inputs for a batch whose block inputs are cached (what runs below the cached block
        is replaced: the shapes count, not the values)."""

    def block_lengths(self, model, batch, hidden, keys: Sequence[str]) -> list[int] | None:
        """Each example's positions in ``hidden`` (a block's input of ``batch``), what is cached
        of it; ``None`` when the block input cannot be cached (not one tensor...)."""

    def same_inputs(self, other) -> bool:
        """Whether ``other`` makes the same inputs of the same keys."""


class Task(Protocol):
    """One task's answers to the generic machinery (``plan`` is a
    :class:`~headsurgeon.train.plan.TrainPlan`; examples are the task's own type)."""

    #: the task's name (``headsurgeon.tasks.SEQUENCE``, ...), in stats and records
    name: str
    #: what progress counts examples in (``texts``, ``sentences``)
    unit: str
    #: the gate's name in messages (``"old-label check"``)
    check_name: str
    #: the class of the gate's report
    report_type: type[GateReport]
    #: the new labels' biases are calibrated on held-out replay (:meth:`calibrator`)
    calibrates: bool
    #: ``replay_confusable`` applies (old labels the parent reads the new examples as)
    replays_confusable: bool
    #: rows of cached block inputs are batched by length
    batches_by_length: bool
    #: training needs every training example's features (targets are built from them)
    needs_train_features: bool
    #: how a feature pass picks each example's features from the head's captured input
    #: (``None``: one vector per example)
    pick: Callable[..., list] | None

    # --- options and data ---------------------------------------------------------------
    def default_max_drop(self) -> float:
        """The gate's tolerance in points when none is given."""

    def defaults(self, old_labels: int | None, new_labels: int | None) -> dict[str, Any]:
        """The values of :class:`~headsurgeon.train.TrainOptions` fields left ``None``."""

    def read_data(self, files, labels: list[str], add: bool, columns: tuple[str, str]):
        """``(data, replay, holdout or None, labels to add)`` from ``train``'s data files."""

    def examples(self, rows: Sequence, columns=None, labels=None, source: str = "data") -> list:
        """The task's examples of rows held in memory: its own examples pass, tuples in the
        order of its columns and dicts with its columns (``columns``: a
        :class:`~headsurgeon.data.Columns`) are converted; ``labels``: the model's (a task
        may write the examples in its scheme). A DataFrame or a ``datasets.Dataset`` arrives
        as dict rows (:func:`headsurgeon.api_data.as_examples`).

        Raises:
            DataError: a bad row, named by its number in ``source``.
        """

    def check_data(self, data, replay, holdout, labels: list[str]) -> None:
        """Refuse examples whose labels the model does not have (in memory)."""

    def read_holdout(self, holdout, parent_labels, child_labels, columns) -> list:
        """``check``'s holdout (a file or examples), validated against both models' labels."""

    def key(self, example) -> str:
        """The example's key in the feature and block-input caches."""

    def labels_in(self, example) -> set[str]:
        """The labels an example teaches."""

    def sample_replay(self, rest, old_labels, per_label: int, seed: int, whole=()) -> list:
        """The replayed old examples (seeded)."""

    def hold_out(self, replay, old_labels, per_label: int, seed: int) -> tuple[list, list]:
        """``(held out, rest)``: the seeded slice of the replay calibration runs on (a task that
        calibrates)."""

    # --- preprocessing, targets, batches ------------------------------------------------
    def preprocessor(self, model_dir, trust_remote_code: bool = False):
        """The preprocessor saved with the model in ``model_dir`` (its tokenizer, image
        processor or feature extractor); a folder without one is refused."""

    def tokenizer(self, tokenizer):
        """The view of the preprocessor that training's and ``check``'s batched passes call
        with keys (the tokenizer itself, a view of it, or an :class:`Inputs`)."""

    def stack(self, values: Sequence):
        """The features of many examples as one tensor."""

    def train_features(self, store, keys: list[str]):
        """The training examples' features as :meth:`rows` takes them."""

    def rows(self, plan, train_rows, train_x, train_h) -> list[dict]:
        """The training rows: targets, weights, features or keys (+ block inputs)."""

    def labelled_features(self, examples, x) -> dict[str, Any]:
        """The features of the examples of each label (to imprint new rows)."""

    def collator(self, tokenizer, max_length: int) -> Callable[[list[dict]], dict]:
        """Batches rows for ``Trainer`` and the top blocks."""

    def from_batch(self, logits, batch):
        """The logits a batch scores (one row per example or per word)."""

    # --- predict, score, gate -----------------------------------------------------------
    def predict(self, model, tokenizer, examples, options, desc: str | None = None):
        """The whole model's logits of ``examples`` (CPU float32)."""

    def scorer(self, plan, holdout) -> Callable[[Any], float]:
        """Logits → the holdout score keep-best and seeds maximise."""

    def report(self, plan, holdout, parent_logits, child_logits, tolerance) -> GateReport:
        """Training's gate on the holdout, from logits."""

    def check(self, parent, child, examples, parent_labels, child_labels, tolerance, *, load,
              **run) -> GateReport:  # fmt: skip
        """``check``'s passes on the holdout and the gate (``load``: source → model, tokenizer)."""

    def calibrator(self, plan):
        """What calibrates the new labels (a task that calibrates): an object whose
        ``run(calibration_set, linear)`` shifts the head's new-label biases in place and returns
        what it did (JSON-able); see :mod:`headsurgeon.train.calibration`."""

    def new_label_examples(self, plan, examples) -> tuple[list, list[int]] | None:
        """The new labels' examples and their class ids, to check they are predicted after
        training (``None``: not checked for this task)."""
