"""The current model's logits and score on held-out examples, by the cheapest path.

- :func:`predictor`: a function returning the logits of some examples: the head alone on their
  cached features, the top blocks on their cached block inputs, or the whole model (the task's
  :meth:`~headsurgeon.tasks.base.Task.predict`); it gives keep-best, the check and the
  calibration their logits;
- :func:`holdout_scorer`: the holdout score keep-best and the seeds maximise (the task's
  :meth:`~headsurgeon.tasks.base.Task.scorer` of those logits).
"""

from __future__ import annotations

import torch


def predictor(plan, examples, x, top, desc: str | None = None):
    """A function returning the current model's logits for ``examples`` (CPU float32; rows as
    the task's :meth:`~headsurgeon.tasks.base.Task.from_batch` gives them), by the cheapest path: the head on their cached features ``x``, the top blocks
    on their cached block inputs, or the whole model.

    With ``desc`` (and ``options.progress``) each call is a :class:`~headsurgeon.progress.Step`
    of that name (``scoring holdout``, ``calibrating``), whatever the path; the function takes
    ``desc`` too, to override it (``None``: silent, as the evaluations during training)."""
    from ..progress import Step

    model, task, options = plan.model, plan.task, plan.options

    def predict(desc: str | None = desc):
        shown = options.progress and desc is not None
        if not plan.features_only and top is None:
            return task.predict(model, plan.tokenizer, examples, options, desc if shown else None)
        with Step(desc or "", len(examples), task.unit, enabled=shown) as step:
            if plan.features_only:
                linear = model.get_submodule(plan.head.paths[0])
                with torch.no_grad():
                    logits = linear(x.to(next(linear.parameters()).device)).float().cpu()
                step.advance(len(examples))
                return logits
            return _top_logits(plan, top, examples, step)

    return predict


def _top_logits(plan, top, examples, step):
    """The logits of ``examples`` by the top blocks on their cached inputs, 64 at a time."""
    task = plan.task
    collate = task.collator(plan.tokenizer, plan.options.max_length)
    rows = [
        {"text": k, "hidden": plan.hidden_cache[k], "label": 0, "weight": 1.0}
        for k in map(task.key, examples)
    ]
    out = []
    device = next(plan.model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(rows), 64):
            batch = collate(rows[start : start + 64])
            inputs = {k: v.to(device) for k, v in batch.items() if k not in NOT_INPUTS}
            logits = top(**inputs).logits.float().cpu()
            out.append(task.from_batch(logits, batch))
            step.advance(len(rows[start : start + 64]))
    return torch.cat(out)


#: what a collated batch holds beside the model's inputs (targets and bookkeeping, as the
#: trainer's loss reads them: one label per example, or a target per scored position)
NOT_INPUTS = (
    "labels", "weight", "target", "word_index", "parent_logits", "multi_target", "target_weight",
)  # fmt: skip


def holdout_scorer(plan, predict, holdout):
    """Holdout score of the model being trained (the task's scorer: accuracy, entity F1...)."""
    model = plan.model
    score_logits = plan.task.scorer(plan, holdout)

    def score(_trained) -> float:
        was = model.training
        model.eval()
        try:
            logits = predict(None)  # silent: training's progress notes the score
        finally:
            model.train(was)
        return score_logits(logits)

    return score
