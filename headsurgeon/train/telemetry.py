"""What training did, step by step, and the warnings that catch its silent failures.

- :class:`Telemetry`: a ``TrainerCallback`` recording, per optimizer step of each seed, the
  loss and its parts (new labels, replay/other labels, distillation: computed by
  :mod:`.losses`, kept by the trainer), the gradient norm of the head's new rows and of each
  optimizer group, and each group's learning rate (LLRD, warm-up and SWA show there); per
  seed also the holdout evaluations (:class:`~.selection.KeepBest`'s history) and where it
  stopped (early stopping, seed trial). A few floats per step: the gradient norms right after
  the backward pass (before Trainer clips them to ``max_grad_norm``, through the trainer's
  ``gradient_probe``), the rest in ``on_pre_optimizer_step``.
- :class:`Fingerprints`: a cheap checksum of every parameter (float64 sum and sum of squares
  per tensor, no copy of the model) before and after training: what should have trained and
  did not change, what should have stayed frozen and changed.
- :func:`diagnose`: the warnings (new rows not training, loss not falling, the checksums, a new
  label never predicted on its own examples), logged and returned for ``headsurgeon.json``.
- :func:`summary`, :func:`write_json`, :func:`plot`: what the CLI prints, ``training.json`` and
  ``training.png`` beside the model (see :func:`~.folders.train`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from .freezing import ProtectedLinear

logger = logging.getLogger(__name__)

#: the first steps over which a zero gradient (or learning rate) of the new rows is a failure
ZERO_STEPS = 3
#: the fewest steps whose loss curve is judged (a quarter of fewer is one or two batches' noise)
LOSS_STEPS = 8
#: a gradient norm or learning rate at or below this is zero
ZERO = 1e-12
#: how many parameter names a warning lists
NAMES_SHOWN = 5
JSON_NAME, PNG_NAME = "training.json", "training.png"
#: what the series of ``training.json`` are (written in it)
ABOUT = {
    "step": "optimizer steps of the seed's run, from 1",
    "loss": "the batch's training loss (on this process's share of the batch)",
    "loss_parts": "new: new labels' examples (positions), other: replay and the rest, "
    "distill: distillation; null when the batch had none",
    "grad_norm": "L2 norm of the gradients after backward, before clipping: the head's new "
    "rows, and each optimizer group",
    "lr": "learning rate of each optimizer group (depthD: D blocks from the top) at the step",
    "eval": "[step, holdout score] of each evaluation (--eval-every, the seed trial, the end)",
    "stop": "early (early stopping), pruned (seed trial) or null; stopped_at: its last step",
}


class Telemetry(TrainerCallback):
    """Per-step series of every seed's run (see the module docstring).

    Args:
        heads: the head modules (a :class:`~.freezing.ProtectedLinear` or a plain Linear).
        new_ids: the new labels' row ids in the head.

    Use: :meth:`begin` before each seed's ``trainer.train()`` (with the trainer, which keeps
    the last batch's loss parts), :meth:`end` after it; :attr:`seeds` holds the curves.
    """

    def __init__(self, heads: Sequence[torch.nn.Module], new_ids: Sequence[int]):
        self.heads = list(heads)
        self.new_ids = torch.as_tensor(list(new_ids), dtype=torch.long)
        self.seeds: list[dict[str, Any]] = []
        self.trainer = None

    def begin(self, seed: int, trainer) -> None:
        """Start the curve of ``seed``'s run, trained by ``trainer`` (a
        :class:`~.trainer.HeadsurgeonTrainer`: its loss parts and gradient probe)."""
        self.trainer = trainer
        self._grads: tuple[float, dict[str, float]] = (0.0, {})
        trainer.gradient_probe = self._take_gradients
        self.seeds.append(
            {
                "seed": seed,
                "step": [],
                "loss": [],
                "loss_parts": {},
                "grad_norm": {"new_rows": [], "groups": {}},
                "lr": {},
                "lr_new_rows": [],
                "eval": [],
                "stopped_at": None,
                "stop": None,
            }
        )

    def end(self, steps: int, keep=None) -> None:
        """Close the current curve: its last step, the holdout evaluations and why it stopped."""
        run = self.seeds[-1]
        run["stopped_at"] = steps
        if keep is not None:
            run["eval"] = [[s, round(v, 6)] for s, v in keep.history]
            run["stop"] = "pruned" if keep.pruned else "early" if keep.stopped_early else None
        self.trainer = None

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        run = self.seeds[-1]
        run["step"].append(state.global_step + 1)
        parts = {k: float(v) for k, v in getattr(self.trainer, "loss_parts", {}).items()}
        run["loss"].append(parts.pop("loss", math.nan))
        for name, value in parts.items():
            run["loss_parts"].setdefault(name, []).append(value)
        new_rows_norm, group_norms = self._grads
        self._grads = (0.0, {})
        run["grad_norm"]["new_rows"].append(new_rows_norm)
        new_rows = self._new_row_params()
        new_lr = 0.0
        for i, group in enumerate(optimizer.param_groups if optimizer is not None else []):
            name = group.get("name", f"group{i}")
            run["grad_norm"]["groups"].setdefault(name, []).append(group_norms.get(name, 0.0))
            run["lr"].setdefault(name, []).append(float(group["lr"]))
            if any(p is q for p in group["params"] for q in new_rows):
                new_lr = max(new_lr, float(group["lr"]))
        run["lr_new_rows"].append(new_lr)
        return control

    def _take_gradients(self) -> None:
        """The gradient norms of the new rows and of each optimizer group, as backward left
        them (the last micro-batch's call holds the accumulated gradients)."""
        optimizer = self.trainer.optimizer
        groups = {}
        for i, group in enumerate(optimizer.param_groups if optimizer is not None else []):
            groups[group.get("name", f"group{i}")] = _norm(p.grad for p in group["params"])
        self._grads = (self._new_rows_norm(), groups)

    def _new_row_params(self) -> list[torch.nn.Parameter]:
        out = []
        for head in self.heads:
            if isinstance(head, ProtectedLinear):
                out += [p for p in (head.new_weight, head.new_bias) if p is not None]
            else:
                out += [p for p in (head.weight, getattr(head, "bias", None)) if p is not None]
        return out

    def _new_rows_norm(self) -> float:
        grads = []
        for head in self.heads:
            if isinstance(head, ProtectedLinear):
                grads += [
                    head.new_weight.grad,
                    None if head.new_bias is None else head.new_bias.grad,
                ]
                continue
            for p in (head.weight, getattr(head, "bias", None)):
                if p is not None and p.grad is not None:
                    grads.append(p.grad[self.new_ids.to(p.grad.device)])
        return _norm(grads)

    def to_dict(self) -> dict[str, Any]:
        """The curves (``seeds``) and what their series mean (``about``)."""
        return {"about": ABOUT, "seeds": self.seeds}


def _norm(grads) -> float:
    """The L2 norm of several gradients (``None``: no gradient, 0)."""
    total = 0.0
    for g in grads:
        if g is not None:
            total += float(g.detach().float().pow(2).sum())
    return math.sqrt(total)


class Fingerprints:
    """A checksum of each parameter of ``model`` (float64 sum and sum of squares per tensor,
    one tensor at a time: no copy of the model), and whether it should train.

    Should train: ``requires_grad`` now, and the heads' parameters (their new rows) always.
    Should stay frozen: the rest, and the old rows a :class:`~.freezing.ProtectedLinear` keeps.
    """

    def __init__(self, model: torch.nn.Module, heads: Sequence[torch.nn.Module]):
        head_params = {id(p) for h in heads for p in h.parameters()}
        self.heads: set[str] = set()  # listed first in the warnings: the likeliest culprits
        self.should_train: dict[str, bool] = {}
        self.sums: dict[str, tuple[float, float]] = {}
        for name, tensor in _tensors(model):
            trains = isinstance(tensor, torch.nn.Parameter) and (
                tensor.requires_grad or id(tensor) in head_params
            )
            self.should_train[name] = trains
            self.sums[name] = _checksum(tensor)
            if id(tensor) in head_params:
                self.heads.add(name)
        self.model = model

    def compare(self) -> tuple[list[str], list[str]]:
        """``(should train but did not change, should be frozen but changed)``, by name."""
        unchanged, moved = [], []
        now = dict(_tensors(self.model))
        for name, before in self.sums.items():
            if name not in now:
                continue
            same = _checksum(now[name]) == before
            if self.should_train[name] and same:
                unchanged.append(name)
            elif not self.should_train[name] and not same:
                moved.append(name)
        return sorted(unchanged, key=lambda n: n not in self.heads), moved


def _tensors(model: torch.nn.Module):
    """The floating-point parameters of ``model`` and the old rows of its protected heads."""
    for name, p in model.named_parameters():
        if p.is_floating_point():
            yield name, p
    for path, module in model.named_modules():
        if isinstance(module, ProtectedLinear):
            for attr in ("old_weight", "old_bias"):
                if getattr(module, attr) is not None:
                    yield f"{path}.{attr}" if path else attr, getattr(module, attr)


def _checksum(t: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        d = t.detach().double()
        return float(d.sum()), float(d.pow(2).sum())


def unpredicted_labels(
    logits: torch.Tensor, gold: Sequence[int], labels: Sequence[str], new_labels: Sequence[str]
) -> list[str]:
    """The new labels the model never predicts on their own training examples (argmax of
    ``logits``, one row per example of gold id ``gold``)."""
    predicted = logits.argmax(-1).tolist()
    missing = []
    for name in new_labels:
        i = labels.index(name)
        mine = [p for p, g in zip(predicted, gold, strict=True) if g == i]
        if mine and i not in mine:
            missing.append(name)
    return missing


def diagnose(
    telemetry: dict[str, Any],
    unchanged: Sequence[str] = (),
    moved: Sequence[str] = (),
    unpredicted: Sequence[str] = (),
) -> list[str]:
    """The warnings of a run (each logged, and returned for ``headsurgeon.json``).

    Args:
        telemetry: :meth:`Telemetry.to_dict`.
        unchanged, moved: :meth:`Fingerprints.compare`.
        unpredicted: :func:`unpredicted_labels`.
    """
    warnings = []
    for run in telemetry["seeds"]:
        warnings += _new_rows_idle(run)
    if (run := _shipped(telemetry)) is not None:
        warnings += _loss_flat(run)
    if unchanged:
        warnings.append(
            f"{len(unchanged)} parameter(s) that should train did not change: {_names(unchanged)} "
            "(a learning rate of 0, a frozen or detached parameter)"
        )
    if moved:
        warnings.append(f"{len(moved)} parameter(s) that should be frozen changed: {_names(moved)}")
    if unpredicted:
        warnings.append(
            f"the new label(s) {', '.join(unpredicted)} are never predicted on their own "
            "training examples after training (too few steps, a learning rate too low, or "
            "calibration pushed them down)"
        )
    for text in warnings:
        logger.warning("%s", text)
    return warnings


def _new_rows_idle(run: dict[str, Any]) -> list[str]:
    first = min(ZERO_STEPS, len(run["step"]))
    if not first:
        return []
    grads, lrs = run["grad_norm"]["new_rows"][:first], run["lr_new_rows"][:first]
    if all(g <= ZERO for g in grads):
        return [
            f"seed {run['seed']}: the new rows' gradient was 0 for the first {first} step(s): the "
            "head is not training (a frozen head, a detached parameter, or --head-path naming "
            "another module)"
        ]
    if all(lr <= ZERO for lr in lrs):
        return [
            f"seed {run['seed']}: the new rows' learning rate was 0 for the first {first} "
            "step(s): the head cannot move (--lr 0, or warm-up longer than the run)"
        ]
    return []


def _loss_flat(run: dict[str, Any]) -> list[str]:
    losses = [v for v in run["loss"] if math.isfinite(v)]
    quarter = len(losses) // 4
    if len(losses) < LOSS_STEPS:
        return []
    first, last = sum(losses[:quarter]) / quarter, sum(losses[-quarter:]) / quarter
    if last < first:
        return []
    return [
        f"seed {run['seed']}: the loss did not fall (mean of the last quarter of steps "
        f"{last:.4g} >= first quarter {first:.4g}): try a higher --lr or more steps"
    ]


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def _shipped(telemetry: dict[str, Any]) -> dict[str, Any] | None:
    """The seed whose weights were kept (the last one without keep-best)."""
    runs = telemetry["seeds"]
    kept = [r for r in runs if r.get("kept")]
    return kept[0] if kept else (runs[-1] if runs else None)


def summary(telemetry: dict[str, Any]) -> dict[str, Any]:
    """A few numbers of the run whose weights were kept: steps (all seeds'), and where the
    loss, its new-label part, the new rows' gradient norm and the holdout score started and
    ended (``[first, last]``: the means of the first and of the last quarter of the steps; for
    the holdout score ``[first evaluation, best]``)."""
    run = _shipped(telemetry)
    out: dict[str, Any] = {
        "steps": sum(len(r["step"]) for r in telemetry["seeds"]),
        "seeds": len(telemetry["seeds"]),
    }
    if run is None or not run["step"]:
        return out
    out["seed"] = run["seed"]
    out["loss"] = _ends(run["loss"])
    if "new" in run["loss_parts"]:
        out["new_loss"] = _ends(run["loss_parts"]["new"])
    out["new_row_grad_norm"] = _ends(run["grad_norm"]["new_rows"])
    if run["eval"]:  # keep-best ships the best evaluation's weights
        scores = [v for _, v in run["eval"]]
        out["holdout"] = [round(scores[0], 6), round(max(scores), 6)]
    return out


def _ends(values: Sequence[float]) -> list[float] | None:
    """Means of the first and of the last quarter of ``values`` (NaN, a batch without that
    part, left out)."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return None
    quarter = max(1, len(values) // 4)
    return [round(sum(values[:quarter]) / quarter, 6), round(sum(values[-quarter:]) / quarter, 6)]


def write_json(telemetry: dict[str, Any], path: str | Path) -> None:
    """Write ``training.json`` (the series, the summary and the warnings)."""
    Path(path).write_text(json.dumps(finite(telemetry), indent=1, allow_nan=False))


def finite(telemetry: Any) -> Any:
    """``telemetry`` with NaN and infinities as ``None`` (JSON has no NaN)."""
    if isinstance(telemetry, float):
        return telemetry if math.isfinite(telemetry) else None
    if isinstance(telemetry, dict):
        return {k: finite(v) for k, v in telemetry.items()}
    if isinstance(telemetry, list | tuple):
        return [finite(v) for v in telemetry]
    return telemetry


def can_plot() -> bool:
    """Whether matplotlib is installed (``training.png`` is drawn only then)."""
    return importlib.util.find_spec("matplotlib") is not None


def plot(telemetry: dict[str, Any], path: str | Path) -> None:
    """Draw ``training.png``: loss parts, new rows' gradient norm, LR per group, holdout score;
    one panel each, one line per seed, a cross where a seed stopped early or was pruned."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    panels = {
        "loss": axes[0][0],
        "grad": axes[0][1],
        "lr": axes[1][0],
        "eval": axes[1][1],
    }
    for k, run in enumerate(telemetry["seeds"]):
        _plot_run(panels, run, f"C{k % 10}", len(telemetry["seeds"]) > 1)
    titles = {
        "loss": ("loss per step", "loss"),
        "grad": ("gradient norm of the new rows", "L2 norm"),
        "lr": ("learning rate per parameter group", "lr"),
        "eval": ("holdout score per evaluation", "score"),
    }
    for key, ax in panels.items():
        title, ylabel = titles[key]
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if ax.has_data():
            ax.legend(fontsize="small")
        elif key == "eval":
            ax.text(0.5, 0.5, "not evaluated (--eval-every 0)", ha="center", transform=ax.transAxes)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_run(panels, run: dict[str, Any], color: str, several: bool) -> None:
    steps = run["step"]
    tag = f"seed {run['seed']}{' (kept)' if run.get('kept') else ''} " if several else ""

    def line(ax, values, style, label):
        points = [(x, y) for x, y in zip(steps, values, strict=True) if math.isfinite(y)]
        if points:  # a part a batch did not have (NaN) is left out, not drawn as 0
            ax.plot(*zip(*points, strict=True), style, color=color, label=label)

    line(panels["loss"], run["loss"], "-", f"{tag}total")
    for style, (part, values) in zip(("--", ":", "-."), run["loss_parts"].items(), strict=False):
        line(panels["loss"], values, style, f"{tag}{part}")
    line(panels["grad"], run["grad_norm"]["new_rows"], "-", f"{tag}new rows")
    for style, (group, values) in zip(_styles(), run["lr"].items(), strict=False):
        line(panels["lr"], values, style, f"{tag}{group}")
    if run["eval"]:
        at, score = zip(*run["eval"], strict=True)
        panels["eval"].plot(at, score, "o-", color=color, label=f"{tag}holdout")
    if run["stop"] and steps:
        for ax in panels.values():
            ax.axvline(run["stopped_at"], color=color, linestyle=":", linewidth=1)
        panels["loss"].plot(
            [run["stopped_at"]], [run["loss"][-1]], "x", color=color, markersize=10,
            label=f"{tag}stopped ({run['stop']})",
        )  # fmt: skip


def _styles():
    while True:
        yield from ("-", "--", ":", "-.")
