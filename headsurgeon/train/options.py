"""Options of ``train``: one dataclass, every default defined once here.

The CLI reads the same constants (a test checks it), so a default never drifts between the API
and the command line. No torch at import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import OptionsError
from ..keywords import checked_keywords

FREEZE_CHOICES = ("backbone", "none")
INIT_CHOICES = ("imprint", "mean", "zeros", "normal")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: token classification: what the new data's annotators tagged (the new types only, or all)
ANNOTATED_CHOICES = ("new", "all")

# Defaults, picked from benchmarks/incremental.py (README "Train new labels").
DEFAULT_FREEZE = "backbone"
DEFAULT_TRAIN_LAYERS = None  # the task's (TrainOptions.for_task)
DEFAULT_TRAIN_NECK = True
DEFAULT_PROTECT_OLD_ROWS = True
DEFAULT_REPLAY_PER_LABEL = None  # the task's (for_task); 0: every replay example
#: old labels per new label replayed whole (the parent's reading of the new examples)
DEFAULT_REPLAY_CONFUSABLE = 0
DEFAULT_DISTILL = 1.0
DEFAULT_TEMPERATURE = 2.0
DEFAULT_INIT = None  # None: imprint new rows that were never trained, keep trained ones
DEFAULT_LLRD = 0.3
DEFAULT_WARMUP = 0.0
DEFAULT_REINIT_TOP = 0
DEFAULT_SWA = False
DEFAULT_EVAL_EVERY = 0
DEFAULT_EARLY_STOPPING = 0
DEFAULT_SEEDS = 1
DEFAULT_SEED = 0
DEFAULT_EPOCHS = None  # the task's (for_task), and for text the number of new labels
DEFAULT_LR = 3e-3
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_LENGTH = 128
DEFAULT_WEIGHT_DECAY = 0.0
DEFAULT_MAX_STEPS = -1
DEFAULT_DEVICE = "auto"
DEFAULT_ANNOTATED = "new"
DEFAULT_NEW_WEIGHT = None  # the task's (for_task)
#: text classification: each new example appears this many times per epoch, each at
#: new_weight / N (the same total weight in more, smaller steps; the replay is not repeated)
DEFAULT_NEW_REPEATS = 1
#: the fields left ``None`` above take the model's task's values (``Task.defaults``: text
#: classification in :mod:`headsurgeon.tasks.text`, token classification in
#: :mod:`headsurgeon.tasks.token.task`), resolved by :meth:`TrainOptions.for_task`
#: "gate": against the gate's tolerance on held-out replay; a number: points of the replay; None: off
DEFAULT_CALIBRATE: float | str | None = "gate"
#: old examples per old label held out of the replay to calibrate on
DEFAULT_CALIBRATE_PER_LABEL = None  # the task's (for_task)
#: fraction of the gate's tolerance (--max-drop, --max-label-drop) calibration may spend
DEFAULT_CALIBRATE_SAFETY = 0.5
#: weight of the old examples training fixed against those it broke, in the held-out estimate
#: (1: the gate's own net measure; 0.5 held back recall on every data set of the benchmark once
#: the held-out slice had MIN_OLD_EXAMPLES examples)
DEFAULT_CALIBRATE_FIXES = 1.0
#: least precision of each new label calibration aims at (the new label as frequent as an
#: average old label); None: no such bound
DEFAULT_CALIBRATE_PRECISION: float | None = 0.8
DEFAULT_CALIBRATE_LABEL_CAP: float | None = 10.0  # percent of one old label's replay; None: off
#: fraction of the steps after which SWA starts averaging
SWA_START = 0.5
#: fraction of the steps after which a later seed is stopped when it trails the best seed so far
SEED_TRIAL = 0.3


@checked_keywords
@dataclass
class TrainOptions:
    """What ``train`` trains and how.

    Attributes:
        freeze: ``"backbone"`` (the backbone is frozen except the top ``train_layers`` blocks;
            with ``train_layers=0`` its features are computed once and only the head trains on
            them) or ``"none"`` (everything trains; ``train_layers`` is then ignored).
        train_layers: with ``freeze="backbone"``, also train the top K encoder blocks (their
            inputs are cached, so only they run); ``None``: the task's default.
        train_neck: with ``freeze="backbone"``, also train the *neck*, the layers between the
            encoder blocks and the head (BERT's pooler, RoBERTa's ``classifier.dense``,
            DistilBERT's ``pre_classifier``, a final norm); with ``train_layers=0`` the blocks'
            outputs are cached and only the neck and the head run.
        protect_old_rows: keep the old labels' rows and biases bit-identical (they are frozen
            buffers during training, fused back into a plain ``nn.Linear`` before saving).
        replay_per_label: old examples replayed per old label (0: all of them), sampled by
            ``seed``; for token classification sentences per old tag. ``None``: the task's
            default (:meth:`for_task`).
        replay_confusable: with ``replay_per_label``, the old labels the parent reads each new
            label's examples as (the top K by mean probability) are replayed whole.
        distill: weight of the KL divergence between the parent's and the child's old-label
            distributions (Learning without Forgetting); 0 turns it off. For token
            classification on or off: a replayed word of an old tag learns the tag the parent
            predicts for it, a hard target (0: its gold tag).
        temperature: distillation temperature.
        init: how untrained new rows start (``None``: ``imprint`` when the data has examples of
            the label; rows that a previous ``train`` already trained are kept).
        llrd: layer-wise LR decay: the head trains at ``lr``, the block at depth d from the top
            at ``lr * llrd**d``, the embeddings at ``lr * llrd**(blocks+1)``; 1 turns it off.
        warmup: linear warmup, a ratio of the steps if < 1, else a number of steps.
        reinit_top: re-initialise the top N encoder blocks before training (they must train).
        swa: stochastic weight averaging of the trainable weights over the last half of training.
        eval_every: evaluate on the holdout every N steps and keep the best weights (0: off).
        early_stopping: stop after this many evaluations without improvement (0: off).
        seeds: train with seeds ``seed .. seed+seeds-1``; a later seed stops at 30% of its steps
            when it trails the best so far; the best by holdout score is kept (needs a holdout).
        seed: first seed (also seeds the replay sample and the ``normal`` init).
        epochs, lr, batch_size, weight_decay: the usual; ``max_steps`` > 0 caps the steps.
            ``epochs`` ``None``: 4, or :data:`~headsurgeon.tasks.text.SEVERAL_NEW_EPOCHS` for a
            text classifier learning several new labels at once.
        max_length: tokenizer truncation length.
        new_weight: loss weight of the new labels' examples (token classification: words of
            the new types) relative to the others; ``None``: the task's default (text: 10;
            token: the weight giving the new types' words
            :data:`~headsurgeon.tasks.token.task.TOKEN_NEW_SHARE` of the total).
        new_repeats: text classification: each new example appears this many times per epoch,
            each at ``new_weight / new_repeats`` (more, smaller steps on the new examples; the
            replay is not repeated).
        calibrate: after training (frozen backbone or train_layers, with replay), shift the
            new labels' biases by one common amount (see :mod:`.calibration`): ``"gate"``, the
            largest shift whose old-label drop on examples held out of the replay stays within
            ``calibrate_safety`` of the gate's tolerance (beyond what training alone lost on
            them, never past the tolerance); a number PTS, the shift that flips
            PTS percent of the held-out old examples the parent got right; ``None``: off.
        calibrate_per_label: old examples per old label held out of the replay for
            calibration (at most a third of a label's; 0: calibrate on the training replay).
            ``None``: the task's default, raised with few old labels (:meth:`for_task`).
        calibrate_safety: the fraction of ``max_drop`` (and ``max_label_drop``) the held-out
            estimate may spend.
        calibrate_fixes: in that estimate, the weight of an old example training fixed against
            one it broke (1: the gate's net measure; the replay is usually the parent's own
            training data, where fixes transfer to new data only in part).
        calibrate_precision: then lower each new label until its false positives on the
            held-out examples allow this precision, were it as frequent as an average old
            label; ``None``: no such bound.
        calibrate_label_cap: with ``calibrate``, a new label that would take more than this
            percent of any one old label's held-out examples (the parent got right) has its
            shift lowered until it does not; ``None``: no cap.
        annotated: token and multi-label classification: ``"new"`` (the new data is annotated
            for the new entity types or labels only, so its ``O`` words learn the parent's
            distribution over the old tags rather than ``O``, and a multi-label text's unlisted
            old labels the parent's sigmoid) or ``"all"`` (every tag or label of the new data
            is gold).
        device: ``auto`` (GPU when present), ``cpu``, ``cuda`` or ``mps``.
        progress: report the long steps (caching, training, calibration, scoring) on the
            ``headsurgeon.progress`` logger (:mod:`headsurgeon.progress`; the CLI shows them on
            stderr unless ``--quiet`` or ``--json``). Off in processes other than the main.
    """

    freeze: str = DEFAULT_FREEZE
    train_layers: int | None = DEFAULT_TRAIN_LAYERS
    train_neck: bool = DEFAULT_TRAIN_NECK
    protect_old_rows: bool = DEFAULT_PROTECT_OLD_ROWS
    replay_per_label: int | None = DEFAULT_REPLAY_PER_LABEL
    replay_confusable: int = DEFAULT_REPLAY_CONFUSABLE
    distill: float = DEFAULT_DISTILL
    temperature: float = DEFAULT_TEMPERATURE
    init: str | None = DEFAULT_INIT
    llrd: float = DEFAULT_LLRD
    warmup: float = DEFAULT_WARMUP
    reinit_top: int = DEFAULT_REINIT_TOP
    swa: bool = DEFAULT_SWA
    eval_every: int = DEFAULT_EVAL_EVERY
    early_stopping: int = DEFAULT_EARLY_STOPPING
    seeds: int = DEFAULT_SEEDS
    seed: int = DEFAULT_SEED
    epochs: float | None = DEFAULT_EPOCHS
    lr: float = DEFAULT_LR
    batch_size: int = DEFAULT_BATCH_SIZE
    max_length: int = DEFAULT_MAX_LENGTH
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    max_steps: int = DEFAULT_MAX_STEPS
    new_weight: float | None = DEFAULT_NEW_WEIGHT
    new_repeats: int = DEFAULT_NEW_REPEATS
    calibrate: float | str | None = DEFAULT_CALIBRATE
    calibrate_per_label: int | None = DEFAULT_CALIBRATE_PER_LABEL
    calibrate_safety: float = DEFAULT_CALIBRATE_SAFETY
    calibrate_fixes: float = DEFAULT_CALIBRATE_FIXES
    calibrate_precision: float | None = DEFAULT_CALIBRATE_PRECISION
    calibrate_label_cap: float | None = DEFAULT_CALIBRATE_LABEL_CAP
    annotated: str = DEFAULT_ANNOTATED
    device: str = DEFAULT_DEVICE
    progress: bool = False

    def __post_init__(self) -> None:
        _choice("freeze", self.freeze, FREEZE_CHOICES)
        _choice("device", self.device, DEVICE_CHOICES)
        _choice("annotated", self.annotated, ANNOTATED_CHOICES)
        if self.init is not None:
            _choice("init", self.init, INIT_CHOICES)
        for name in ("train_layers", "replay_per_label", "replay_confusable", "reinit_top",
                     "eval_every"):  # fmt: skip
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 0)
        for name in ("early_stopping", "seed"):
            _at_least(name, getattr(self, name), 0)
        for name in ("seeds", "batch_size", "max_length", "new_repeats"):
            _at_least(name, getattr(self, name), 1)
        for name in ("distill", "warmup", "weight_decay"):
            _at_least(name, getattr(self, name), 0)
        for name in ("temperature", "epochs", "lr", "new_weight"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise OptionsError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.calibrate is not None and self.calibrate != "gate":
            if isinstance(self.calibrate, str):
                try:
                    self.calibrate = float(self.calibrate)
                except ValueError:
                    raise OptionsError(
                        f"calibrate must be 'gate' or a number of points, got {self.calibrate!r}"
                    ) from None
            _at_least("calibrate", self.calibrate, 0)
        if self.calibrate_per_label is not None:
            _at_least("calibrate_per_label", self.calibrate_per_label, 0)
        if not 0 <= self.calibrate_fixes <= 1:
            raise OptionsError(f"calibrate_fixes must be in [0, 1], got {self.calibrate_fixes!r}")
        if not 0 < self.calibrate_safety <= 1:
            raise OptionsError(f"calibrate_safety must be in (0, 1], got {self.calibrate_safety!r}")
        if self.calibrate_precision is not None and not 0 < self.calibrate_precision < 1:
            raise OptionsError(
                f"calibrate_precision must be in (0, 1), got {self.calibrate_precision!r}"
            )
        if self.calibrate_label_cap is not None:
            _at_least("calibrate_label_cap", self.calibrate_label_cap, 0)
        if not 0 < self.llrd <= 1:
            raise OptionsError(f"llrd must be in (0, 1], got {self.llrd!r}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise OptionsError(f"max_steps must be -1 (no cap) or > 0, got {self.max_steps!r}")
        if self.reinit_top and self.reinit_top > self.trained_blocks_bound:
            raise OptionsError(
                f"reinit_top={self.reinit_top} re-initialises blocks that would not train "
                f"(train_layers={self.train_layers}); raise train_layers or use freeze='none'"
            )
        if self.early_stopping and not self.eval_every:
            raise OptionsError("early_stopping needs eval_every > 0 (evaluations to compare)")

    @property
    def trained_blocks_bound(self) -> float:
        """How many top blocks train at most (``inf`` with ``freeze='none'``; with
        ``train_layers`` ``None``, the largest default of the registered tasks)."""
        if self.freeze == "none":
            return float("inf")
        if self.train_layers is not None:
            return self.train_layers
        from ..tasks import registered

        return max(task.defaults()["train_layers"] for task in registered())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def for_task(
        self,
        task,
        blocks: int | None = None,
        old_labels: int | None = None,
        new_labels: int | None = None,
    ) -> TrainOptions:
        """These options with the task's defaults in place of ``None``.

        Args:
            task: a :class:`~headsurgeon.tasks.base.Task`, or a registered task's name.
            blocks: the model's encoder blocks: ``train_layers`` is at most that many.
            old_labels, new_labels: how many there are (a text classifier's per-label counts
                rise with few old labels, its epochs with several new ones:
                :meth:`~headsurgeon.tasks.text.TextTask.defaults`).

        A ``None`` that stays, such as a token classifier's ``new_weight``, is resolved from
        the data in training.
        """
        if isinstance(task, str):
            from ..tasks import task_named

            task = task_named(task)
        defaults = task.defaults(old_labels, new_labels)
        if blocks is not None:  # a default never asks for more blocks than the model has
            defaults["train_layers"] = min(defaults["train_layers"], blocks)
        unset = {k: v for k, v in defaults.items() if getattr(self, k) is None and v is not None}
        return replace(self, **unset) if unset else self


#: the ``train`` command's help of each option (the CLI generates its options from the
#: dataclass's fields, their defaults and these texts: nothing is written twice)
HELP = {
    "freeze": (
        "backbone: frozen except the top --train-layers blocks and the neck (--train-neck), "
        "whose inputs are computed once; none: everything trains."
    ),
    "train_layers": (
        "With --freeze backbone, train the top K encoder blocks with the neck and the head (0: "
        "no block; the blocks' outputs are computed once). [default: 1; token classifiers: 3]"
    ),
    "train_neck": (
        "With --freeze backbone, train the neck (the layers between the blocks and the head: "
        "BERT's pooler, RoBERTa's classifier.dense, a final norm) with the head. --train-layers "
        "0 --no-train-neck: the head alone, on cached features."
    ),
    "protect_old_rows": "Keep the old labels' rows and biases bit-identical.",
    "replay_per_label": "Old examples replayed per old label (0: all of --replay); token "
    "classifiers: sentences per old tag. [default: 20, more with under 50 old labels so that "
    "1000 are replayed in all; token classifiers: 1000, entity-free sentences counting as O's]",
    "replay_confusable": (
        "With --replay-per-label: replay ALL examples of the K old labels the parent reads each "
        "new label's examples as (its near-synonyms, where its false positives and misses are)."
    ),
    "distill": (
        "Weight of distillation to the parent's old-label logits (KL); 0: off. Token "
        "classifiers: replayed words learn the tag the parent predicts (0: their gold tags)."
    ),
    "temperature": "Distillation temperature.",
    "init": (
        "How new rows start. Default: imprint rows never trained (from the data's examples), "
        "keep trained ones."
    ),
    "llrd": "Layer-wise LR decay: depth d from the top trains at lr*LLRD^d.",
    "warmup": "Linear warmup: ratio of the steps if < 1, else steps.",
    "reinit_top": "Re-initialise the top N encoder blocks first (they must train).",
    "swa": "Stochastic weight averaging over the second half of training.",
    "eval_every": "Score on --holdout every N steps and keep the best weights (0: off).",
    "early_stopping": "Stop after N evaluations without improvement (0: off).",
    "seeds": "Train N seeds, stop weak ones at 30% of the steps, keep the best on --holdout.",
    "seed": "First seed (also the replay sample).",
    "lr": "Learning rate (of the head; see --llrd).",
    "epochs": "Passes over the training rows. [default: 4; text classifiers adding several "
    "labels at once: 8]",
    "max_length": "Tokenizer truncation length.",
    "max_steps": "Cap the training steps (-1: no cap).",
    "new_repeats": "Text classifiers: each new example appears N times per epoch, each at "
    "--new-weight/N: more steps on the few new examples, no more passes over the replay.",
    "new_weight": "Loss weight of the new labels' examples (token classifiers: the new types' "
    "words) relative to the others. [default: 10; token classifiers: the weight that makes the "
    "new types' words 3.5% of the words' total weight]",
    "calibrate": (
        "After training (frozen backbone or --train-layers, with --replay), shift the new "
        "labels' biases by one common amount. gate: the largest shift whose old-label drop on "
        "replay examples held out of training stays within --calibrate-safety of --max-drop "
        "(beyond what training alone lost on them, up to --max-drop in all); "
        "PTS: the shift that flips PTS percent of the held-out old examples the parent got "
        "right."
    ),
    "calibrate_per_label": (
        "Old examples per old label held out of --replay to calibrate on (at most a third of a "
        "label's; 0: calibrate on the training replay). [default: 20, more with under 50 old "
        "labels so that 1000 are held out in all]"
    ),
    "calibrate_safety": "Fraction of --max-drop (and --max-label-drop) the held-out estimate may spend.",
    "calibrate_fixes": (
        "In the held-out estimate, how much an old example training fixed offsets one it broke "
        "(1: the gate's own net measure; below 1: fixes on replay the parent was trained on are "
        "trusted less, as they transfer to new data only in part)."
    ),
    "calibrate_precision": (
        "Then lower each new label until its false positives on the held-out examples allow "
        "this precision, were the label as frequent as an average old label (0: no bound)."
    ),
    "calibrate_label_cap": (
        "With --calibrate: lower a new label's bias until it takes at most PCT percent of any "
        "one old label's held-out examples (the budget then cannot fall on one near-synonym "
        "label)."
    ),
    "annotated": (
        "Token and multi-label classification: what --data was annotated for. new: the new "
        "entity types or labels only (its O words, or its unlisted old labels, learn the "
        "parent's reading, so old entities or labels left unmarked are not unlearned); all: "
        "every tag or label is gold."
    ),
    "device": "auto: GPU when present.",
}


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise OptionsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _at_least(name: str, value, low) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise OptionsError(f"{name} must be a number >= {low}, got {value!r}")
