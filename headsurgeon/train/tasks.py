"""The task seam: what differs between sequence and token classification in training.

``train_model`` runs one pipeline (caches → rows → ``Trainer`` → select → check) for every task;
a task object says how to key and tokenize its examples, which head inputs are features (one
vector per text, or one per word), how training rows and batches look, how holdout logits are
read, and how the gate scores them. :class:`SequenceTask` is text classification (one label per
text); :class:`TokenTask` tags every word (a word's prediction is its first subword's, see
:mod:`headsurgeon.words`). Image/audio tasks would add a class here.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

from ..data import Example, check_labels
from ..errors import DataError

logger = logging.getLogger(__name__)


class SequenceTask:
    """One label per text (``...ForSequenceClassification``)."""

    name = "sequence-classification"
    calibrates = True
    #: training rows of cached block inputs go in batches of similar length (less padding;
    #: measured on the incremental benchmark's 20 draws)
    batches_by_length = True

    def key(self, example) -> str:
        return example.text

    def default_max_drop(self) -> float:
        from ..checks import DEFAULT_MAX_DROP

        return DEFAULT_MAX_DROP

    def tokenizer(self, tokenizer):
        return tokenizer

    #: how the feature passes pick each example's features from the head's captured input
    #: (``None``: one vector per example, :func:`~.features.head_inputs`' own rule)
    pick = None
    #: examples are sentences of words, each word a scored row (token classification)
    per_word = False
    #: what progress counts the examples in
    unit = "texts"

    def stack(self, values: Sequence):
        import torch

        return torch.stack(list(values))

    def check_data(self, data, replay, holdout, labels) -> None:
        check_labels(data, labels, source="data")
        only = "{} must hold only the model's labels"
        check_labels(replay, labels, source="replay", only_known=only.format("replay"))
        if holdout is not None:
            check_labels(holdout, labels, source="holdout", only_known=only.format("holdout"))

    def labels_in(self, example) -> set[str]:
        return {example.label}

    def sample_replay(self, rest, old_labels, per_label, seed, whole=()):
        from .replay import sample_replay

        return sample_replay(rest, old_labels, per_label, seed, whole=whole)

    def rows(self, plan, train_rows, train_x, train_h) -> list[dict]:
        """Training rows: label, weight, features or text (+ cached block inputs, parent logits)."""
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
                row["text"] = e.text
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

    def collator(self, tokenizer, max_length: int):
        from .trainer import make_collator

        return make_collator(tokenizer, max_length)

    def from_batch(self, logits, batch):
        """The logits a batch scores (one row per example here)."""
        return logits

    def predict(self, model, tokenizer, examples, options, desc: str | None = None):
        """The whole model's logits of ``examples`` (one batched pass); with ``desc`` (and
        ``options.progress``) the pass reports its progress under that name."""
        from ..predict import predict_logits

        texts = [e.text for e in examples]
        return predict_logits(
            model, tokenizer, texts, batch_size=max(options.batch_size, 64),
            max_length=options.max_length, progress=options.progress and desc is not None,
            desc=desc or "",
        ).float().cpu()  # fmt: skip

    def scorer(self, plan, holdout):
        """Holdout accuracy (every label) of logits."""
        import torch

        labels = plan.labels
        gold = torch.tensor([labels.index(e.label) for e in holdout])
        return lambda logits: (logits.argmax(-1) == gold).float().mean().item()

    def report(self, plan, holdout, parent_logits, child_logits, tolerance):
        from ..checks import compare

        return compare(
            parent_logits, child_logits, holdout, plan.old_labels, plan.labels,
            max_drop=tolerance.max_drop, max_label_drop=tolerance.max_label_drop,
        )  # fmt: skip


class TokenTask(SequenceTask):
    """One tag per word (``...ForTokenClassification``); examples are
    :class:`~headsurgeon.token_data.Sentence` s (``tokens``, ``tags``).

    Training targets per word: gold tags, except that with ``annotated="new"`` the ``O`` words
    of the new data (annotated for the new types only: their old entities are tagged ``O``)
    take the parent's distribution over the old tags as a soft target (distillation on ``O``
    words, as ExtendNER); the replay is fully annotated and gold.
    """

    name = "token-classification"
    calibrates = False
    per_word = True
    unit = "sentences"
    #: drawn at random: by length, the NER benchmark's new-type F1 fell in all three scenarios
    #: (70.8/72.3/66.1 -> 68.5/69.6/65.2)
    batches_by_length = False

    def key(self, example) -> str:
        from ..words import key

        return key(example.tokens)

    def default_max_drop(self) -> float:
        from ..entity_check import DEFAULT_MAX_DROP

        return DEFAULT_MAX_DROP

    def tokenizer(self, tokenizer):
        from ..words import WordTokenizer

        return tokenizer if isinstance(tokenizer, WordTokenizer) else WordTokenizer(tokenizer)

    def pick(self, head, head_path, captured, output, enc) -> list:
        from ..errors import UnsupportedModelError
        from ..words import per_word

        x = captured[0] if len(captured) == 1 else None
        if x is None or x.dim() != 3:
            raise UnsupportedModelError(
                f"the head {head_path} is not applied once to [batch, tokens, hidden]: "
                "train it with --freeze none"
            )
        return [v.float().cpu() for v in per_word(x, enc)]

    def stack(self, values: Sequence):
        import torch

        return torch.cat(list(values))

    def check_data(self, data, replay, holdout, labels) -> None:
        for source, rows in (("data", data), ("replay", replay), ("holdout", holdout or [])):
            unknown = sorted({t for s in rows for t in s.tags} - set(labels))
            if unknown:
                raise DataError(
                    f"{source} has tag(s) the model does not have: {', '.join(unknown[:10])} "
                    f"(the model's: {', '.join(labels[:20])}); add their entity types first "
                    "(headsurgeon add-label, or train --add)"
                )

    def labels_in(self, example) -> set[str]:
        return set(example.tags) - {"O"}

    def sample_replay(self, rest, old_labels, per_label, seed, whole=()):
        """Up to ``per_label`` sentences per old tag (seeded; 0: all), each sentence once."""
        if not per_label:
            return list(rest)
        rng = random.Random(seed)
        order = list(range(len(rest)))
        rng.shuffle(order)
        chosen, counts = [], dict.fromkeys(old_labels, 0)
        for i in order:
            tags = self.labels_in(rest[i]) & counts.keys()
            if any(counts[t] < per_label for t in tags):
                chosen.append(i)
                for t in tags:
                    counts[t] += 1
        return [rest[i] for i in sorted(chosen)]

    def new_weight(self, plan, train_rows, train_x_list) -> float:
        """The loss weight of the new types' words: ``options.new_weight``, or when it is
        ``None`` the weight that gives them :data:`~.options.TOKEN_NEW_SHARE` of the scored
        words' total weight (at least 1). Fixed weights suit one data size only: 50 new
        sentences against a few hundred replayed ones need several times the weight of 400."""
        if plan.options.new_weight is not None:
            return plan.options.new_weight
        from .options import TOKEN_NEW_SHARE

        new = set(plan.new_labels)
        n_new = n_all = 0
        for s, x in zip(train_rows, train_x_list, strict=True):
            n_all += len(x)
            n_new += sum(tag in new for tag in s.tags[: len(x)])
        if not n_new:
            return 1.0
        share = TOKEN_NEW_SHARE
        return max(1.0, share / (1 - share) * (n_all - n_new) / n_new)

    def word_targets(self, plan, sentence, x, gold_only: bool, new_weight: float = 1.0):
        """``(targets [words, labels], weights [words])`` of one sentence whose word features
        are ``x`` (words cut by truncation have none and no target)."""
        import torch

        n, labels = len(x), plan.labels
        targets = torch.zeros(n, len(labels))
        weights = torch.ones(n)
        soft = None
        if not gold_only:
            soft = torch.softmax(plan.parent(x), -1)
        new = set(plan.new_labels)
        for w, tag in enumerate(sentence.tags[:n]):
            if soft is not None and tag == "O":
                targets[w, plan.old_ids] = soft[w]
            else:
                targets[w, labels.index(tag)] = 1.0
                if tag in new:
                    weights[w] = new_weight
        return targets, weights

    def rows(self, plan, train_rows, train_x_list, train_h) -> list[dict]:
        """Word rows (features only) or sentence rows (text key, block inputs, word targets)."""
        data_keys = plan.data_keys
        annotated_new = plan.options.annotated == "new"
        weight = plan.token_new_weight = self.new_weight(plan, train_rows, train_x_list)
        rows = []
        for i, s in enumerate(train_rows):
            x = train_x_list[i]
            gold_only = not annotated_new or self.key(s) not in data_keys
            targets, weights = self.word_targets(plan, s, x, gold_only, weight)
            if plan.features_only:
                rows += [
                    {"features": x[w], "target": targets[w], "weight": float(weights[w])}
                    for w in range(len(x))
                ]
                continue
            row = {"text": self.key(s), "targets": targets, "weights": weights}
            if train_h is not None:
                row["hidden"] = train_h[i]
            rows.append(row)
        return rows

    def labelled_features(self, examples, x_list) -> dict[str, Any]:
        import torch

        out: dict[str, list] = {}
        for s, x in zip(examples, x_list, strict=True):
            for w, tag in enumerate(s.tags[: len(x)]):
                out.setdefault(tag, []).append(x[w])
        return {t: torch.stack(v) for t, v in out.items()}

    def collator(self, tokenizer, max_length: int):
        return make_token_collator(tokenizer, max_length)

    def from_batch(self, logits, batch):
        """Per-word logits ``[words, labels]`` of a batch (its ``word_index``)."""
        index = batch["word_index"]
        return logits[index >= 0]

    def predict(self, model, tokenizer, examples, options, desc: str | None = None):
        import torch

        from ..words import predict_word_logits

        per = predict_word_logits(
            model, self.tokenizer(tokenizer), [s.tokens for s in examples],
            batch_size=max(options.batch_size, 64), max_length=options.max_length,
            progress=options.progress and desc is not None, desc=desc or "", unit=self.unit,
        )  # fmt: skip
        return torch.cat(per)

    def _split(self, logits, lengths):
        out, start = [], 0
        for n in lengths:
            out.append(logits[start : start + n])
            start += n
        return out

    def scorer(self, plan, holdout):
        """Entity micro F1 (every type) of per-word logits (``plan.holdout_lengths``: words
        per sentence)."""
        from seqeval.metrics import f1_score

        from ..words import tags_from_logits

        gold = [list(s.tags) for s in holdout]
        labels, lengths = plan.labels, plan.holdout_lengths

        def score(logits) -> float:
            per = self._split(logits, lengths)
            pred = tags_from_logits(per, labels, [len(g) for g in gold])
            return float(f1_score(gold, pred))

        return score

    def report(self, plan, holdout, parent_logits, child_logits, tolerance):
        from ..entity_check import compare_entities
        from ..words import tags_from_logits

        lengths = plan.holdout_lengths
        n = [len(s.tags) for s in holdout]
        old = [plan.labels[i] for i in plan.old_ids]
        parent = tags_from_logits(self._split(parent_logits, lengths), old, n)
        child = tags_from_logits(self._split(child_logits, lengths), plan.labels, n)
        return compare_entities(
            [list(s.tags) for s in holdout], parent, child, old, plan.labels,
            max_drop=tolerance.max_drop, max_label_drop=tolerance.max_label_drop,
        )  # fmt: skip


def make_token_collator(tokenizer, max_length: int):
    """Batch token rows: stacked word features, or tokenized sentences whose first subwords
    carry their word's target and weight (other positions weigh 0)."""
    import torch

    from ..words import word_index

    def collate(rows: list[dict]) -> dict:
        if "features" in rows[0]:
            return {
                "features": torch.stack([r["features"] for r in rows]),
                "target": torch.stack([r["target"] for r in rows]),
                "weight": torch.tensor([r["weight"] for r in rows], dtype=torch.float32),
            }
        enc = tokenizer(
            [r["text"] for r in rows], padding=True, truncation=True, max_length=max_length,
            return_tensors="pt",
        )  # fmt: skip
        batch = dict(enc)
        b, width = enc["input_ids"].shape
        index = word_index(enc, b, width)
        batch["word_index"] = index
        if "targets" in rows[0]:
            n_labels = rows[0]["targets"].shape[-1]
            target = torch.zeros(b, width, n_labels)
            weight = torch.zeros(b, width)
            for i, r in enumerate(rows):
                at = index[i] >= 0
                words = index[i][at]
                keep = words < len(r["targets"])
                positions = at.nonzero().squeeze(-1)[keep]
                target[i, positions] = r["targets"][words[keep]]
                weight[i, positions] = r["weights"][words[keep]]
            batch["target"], batch["weight"] = target, weight
        if "hidden" in rows[0]:
            hidden = torch.zeros(b, width, rows[0]["hidden"].shape[-1])
            for i, r in enumerate(rows):
                hidden[i, : len(r["hidden"])] = r["hidden"]
            batch["hidden"] = hidden
        return batch

    return collate


def task_for(model) -> SequenceTask:
    """The training side of an in-memory model's task (:func:`headsurgeon.tasks.task_of_model`;
    sequence and token classification; other tasks and multi-label models are refused).

    Raises:
        UnsupportedModelError: a multi-label, image, audio or unknown-task model.
    """
    from ..tasks import TOKEN, require_trainable, task_of_model

    task = require_trainable(task_of_model(model), model.config, "train")
    return TokenTask() if task == TOKEN else SequenceTask()


__all__ = ["Example", "SequenceTask", "TokenTask", "make_token_collator", "task_for"]
