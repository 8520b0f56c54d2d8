"""NER's task: one tag per word (``...ForTokenClassification``).

:class:`TokenTask` is what ``train``, ``check`` and ``sweep`` ask of a token classifier:
examples are :class:`~.data.Sentence` s read from CoNLL/JSONL in the model's scheme, keyed by
their words (:func:`.words.key`); a sentence's features are one vector per word (its first
subword's); training targets are per word; the gate is the entity gate (:mod:`.gate`).
:func:`make_token_collator` batches its rows.

No torch at import.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from ...errors import DataError, UnsupportedModelError
from .. import TOKEN
from .. import rows as _rows
from ..sniff import check_data_task
from . import schemes
from .data import Sentence, entity_types, read_holdout, read_sentences, to_scheme
from .gate import (
    DEFAULT_MAX_DROP,
    EntityCheckReport,
    compare_entities,
    read_holdout_sentences,
    tag_and_compare,
)
from .unannotated import unannotated_guard
from .words import (
    WordTokenizer,
    key,
    per_word,
    predict_word_logits,
    tags_from_logits,
    word_index,
)

#: token classification's values of the ``TrainOptions`` fields left ``None`` (``new_weight``
#: stays ``None``: resolved from the data, see :meth:`TokenTask.new_weight`)
OPTION_DEFAULTS = {
    "train_layers": 3, "new_weight": None, "replay_per_label": 1000, "calibrate_per_label": 20,
    "epochs": 4.0,
}  # fmt: skip
#: with ``new_weight`` None: the new types' words get the weight that makes them this share of
#: the scored words' total weight (chosen on the NER benchmark's 50/200/400 sentence scenarios:
#: benchmarks/ner.py)
TOKEN_NEW_SHARE = 0.035
#: sentences with no entity are replayed as the tag ``O``'s (``replay_per_label`` of them): they
#: are the new types' cleanest negatives (the NER benchmark turns this off to measure it)
REPLAY_O_SENTENCES = True


class TokenTask:
    """One tag per word (``...ForTokenClassification``); examples are
    :class:`~.data.Sentence` s (``tokens``, ``tags``).

    Training targets per word: gold tags, except that with ``annotated="new"`` the ``O`` words
    of the new data (annotated for the new types only: their old entities are tagged ``O``)
    take the parent's distribution over the old tags as a soft target (distillation on ``O``
    words, as ExtendNER); the replay is fully annotated and gold. Implements
    :class:`~headsurgeon.tasks.base.Task` (on its own: it shares no code with the text task).
    """

    name = TOKEN
    unit = "sentences"
    check_name = EntityCheckReport.NAME
    report_type = EntityCheckReport
    calibrates = False
    replays_confusable = False
    #: drawn at random: by length, the NER benchmark's new-type F1 fell in all three scenarios
    #: (70.8/72.3/66.1 -> 68.5/69.6/65.2)
    batches_by_length = False
    #: every training sentence's word features: the ``O`` words' targets come from the parent
    needs_train_features = True

    def key(self, example) -> str:
        """A sentence's key: its words joined (:func:`.words.key`)."""
        return key(example.tokens)

    def preprocessor(self, model_dir, trust_remote_code: bool = False):
        """The tokenizer saved in ``model_dir`` (:func:`~headsurgeon.predict.load_text_tokenizer`:
        a folder without tokenizer files is refused)."""
        from ...predict import load_text_tokenizer

        return load_text_tokenizer(model_dir, trust_remote_code)

    def default_max_drop(self) -> float:
        """The entity gate's default tolerance (:data:`.gate.DEFAULT_MAX_DROP`, points of F1)."""
        return DEFAULT_MAX_DROP

    def defaults(self, old_labels: int | None = None, new_labels: int | None = None) -> dict:
        """:data:`OPTION_DEFAULTS` (the counts of labels do not change them)."""
        return dict(OPTION_DEFAULTS)

    def read_data(self, files, labels, add, columns=None):
        """Sentences in the model's tagging scheme from ``files`` (a
        :class:`~headsurgeon.train.folders.DataFiles`; CoNLL or JSONL, ``columns`` unused);
        with ``add`` the tags of the data's entity types the model lacks are to be added:
        ``(data, replay, holdout or None, tags to add)``."""
        for option, path in files.given():
            check_data_task(path, token_model=True, option=option)
        raw = read_sentences(files.data)
        added = []
        if add:
            scheme = schemes.detect(labels)
            have = set(scheme.entity_types(labels)) if scheme else set()
            missing = [t for t in entity_types(raw) if t not in have]
            added = schemes.tags_of_types(scheme, labels, missing)
            added = [t for t in added if t not in labels]
        grown = labels + added
        examples = to_scheme(raw, grown)
        replayed = read_sentences(files.replay, labels=grown) if files.replay else []
        held = read_holdout(files.holdout, grown) if files.holdout else None
        return examples, replayed, held, added

    def examples(self, rows, columns=None, labels=None, source: str = "data") -> list:
        """:class:`~.data.Sentence` s of in-memory ``rows``: themselves, ``(tokens, tags)``
        tuples, or dicts with ``tokens`` and ``tags`` (or ``ner_tags``, as ``datasets`` keeps
        them); with ``labels`` (the model's tags) written in its scheme (:func:`.data.to_scheme`).

        Raises:
            DataError: a row of another shape, words and tags of different lengths, a tag the
                model cannot take (naming the row).
        """
        out = []
        for number, row in enumerate(rows, 1):
            if isinstance(row, Sentence):
                out.append(row)
                continue
            at = _rows.where(source, number)
            column = "ner_tags" if isinstance(row, dict) and "tags" not in row else "tags"
            tokens, tags = _rows.fields(row, ("tokens", column), at)
            tokens, tags = _rows.words(tokens, at, "tokens"), _rows.words(tags, at, column)
            if len(tokens) != len(tags):
                raise DataError(f"{at}: {len(tokens)} tokens but {len(tags)} {column}")
            out.append(Sentence(tokens, tags, source, number))
        return out if labels is None else to_scheme(out, labels)

    def read_holdout(self, holdout, parent_labels, child_labels, columns=None) -> list:
        """``check``'s holdout sentences (:func:`.gate.read_holdout_sentences`)."""
        return read_holdout_sentences(holdout, parent_labels, child_labels)

    def tokenizer(self, tokenizer):
        """A :class:`~.words.WordTokenizer` view of the model's (fast) tokenizer."""
        return tokenizer if isinstance(tokenizer, WordTokenizer) else WordTokenizer(tokenizer)

    def train_features(self, store, keys: list[str]):
        """One ``[words, hidden]`` tensor per sentence."""
        return store.each(keys)

    def pick(self, head, head_path, captured, output, enc) -> list:
        """Each sentence's word features (first subwords) from the head's captured input."""
        x = captured[0] if len(captured) == 1 else None
        if x is None or x.dim() != 3:
            raise UnsupportedModelError(
                f"the head {head_path} is not applied once to [batch, tokens, hidden]: "
                "train it with --freeze none"
            )
        return [v.float().cpu() for v in per_word(x, enc)]

    def stack(self, values: Sequence):
        """The word features of many sentences, one row per word."""
        import torch

        return torch.cat(list(values))

    def check_data(self, data, replay, holdout, labels) -> None:
        """Refuse sentences with tags the model does not have."""
        for source, rows in (("data", data), ("replay", replay), ("holdout", holdout or [])):
            unknown = sorted({t for s in rows for t in s.tags} - set(labels))
            if unknown:
                raise DataError(
                    f"{source} has tag(s) the model does not have: {', '.join(unknown[:10])} "
                    f"(the model's: {', '.join(labels[:20])}); add their entity types first "
                    "(headsurgeon add-label, or train --add)"
                )

    def labels_in(self, example) -> set[str]:
        """The tags a sentence teaches (``O`` is none)."""
        return set(example.tags) - {"O"}

    def hold_out(self, replay, old_labels, per_label, seed):
        """Nothing is held out: token classifiers are not calibrated."""
        return [], list(replay)

    def calibrator(self, plan):
        """None: token classifiers are not calibrated (``calibrates`` is false)."""
        return None

    def sample_replay(self, rest, old_labels, per_label, seed, whole=()):
        """Up to ``per_label`` sentences per old tag (seeded; 0: all), each sentence once; a
        sentence with no entity counts as one of the tag ``O``'s."""
        if not per_label:
            return list(rest)
        rng = random.Random(seed)
        order = list(range(len(rest)))
        rng.shuffle(order)
        chosen, counts = [], dict.fromkeys(old_labels, 0)
        for i in order:
            tags = self.labels_in(rest[i]) or ({"O"} if REPLAY_O_SENTENCES else set())
            tags &= counts.keys()
            if any(counts[t] < per_label for t in tags):
                chosen.append(i)
                for t in tags:
                    counts[t] += 1
        return [rest[i] for i in sorted(chosen)]

    def new_weight(self, plan, train_rows, train_x_list) -> float:
        """The loss weight of the new types' words: ``options.new_weight``, or when it is
        ``None`` the weight that gives them :data:`TOKEN_NEW_SHARE` of the scored
        words' total weight (at least 1). Fixed weights suit one data size only: 50 new
        sentences against a few hundred replayed ones need several times the weight of 400."""
        if plan.options.new_weight is not None:
            return plan.options.new_weight
        new = set(plan.new_labels)
        n_new = n_all = 0
        for s, x in zip(train_rows, train_x_list, strict=True):
            n_all += len(x)
            n_new += sum(tag in new for tag in s.tags[: len(x)])
        if not n_new:
            return 1.0
        share = TOKEN_NEW_SHARE
        return max(1.0, share / (1 - share) * (n_all - n_new) / n_new)

    def word_targets(self, plan, sentence, x, replayed: bool, new_weight: float = 1.0):
        """``(targets [words, labels], weights [words])`` of one sentence whose word features
        are ``x`` (words cut by truncation have none and no target).

        A new sentence (``replayed`` false): with ``annotated="new"`` its ``O`` words take the
        parent's distribution over the old tags, its other words their gold tag; with
        ``"all"`` every word its gold tag. A replayed sentence: each word of an old tag (``O``
        included) the tag the parent predicts for it (with ``options.distill`` 0: its gold
        tag), so that training keeps the parent's reading of old text rather than re-fitting
        its gold, which moved 4-5 % of a holdout's old entities each way on the NER benchmark
        and made train's own gate refuse 7 of 10 DBPedia draws; a word of a new type its gold
        tag. The parent's distribution as a soft target kept the parent's decisions less
        firmly (14 of 20 benchmark draws passed the gate, against 18), and the gold pulled
        half-way to the parent less still: docs/benchmarks.md (NER)."""
        import torch

        n, labels = len(x), plan.labels
        targets = torch.zeros(n, len(labels))
        weights = torch.ones(n)
        distilled = replayed and plan.options.distill > 0
        soft_o = not replayed and plan.options.annotated == "new"
        soft = torch.softmax(plan.parent(x), -1) if soft_o or distilled else None
        new = set(plan.new_labels)
        for w, tag in enumerate(sentence.tags[:n]):
            if tag in new:
                targets[w, labels.index(tag)] = 1.0
                weights[w] = new_weight
            elif distilled:
                targets[w, plan.old_ids[int(soft[w].argmax())]] = 1.0
            elif soft_o and tag == "O":
                targets[w, plan.old_ids] = soft[w]
            else:
                targets[w, labels.index(tag)] = 1.0
        return targets, weights

    def rows(self, plan, train_rows, train_x_list, train_h) -> list[dict]:
        """Word rows (features only) or sentence rows (text key, block inputs, word targets);
        a replayed word read as ``O`` that :func:`.unannotated.unannotated_guard` matches
        weighs 0 (it may be an unannotated mention of a new type)."""
        data_keys = plan.data_keys
        weight = self.new_weight(plan, train_rows, train_x_list)
        plan.task_stats["new_word_weight"] = weight
        rows = []
        guard = unannotated_guard(
            plan, train_rows, train_x_list, lambda s: self.key(s) in data_keys
        )
        unscored = guarded = 0
        o_id = plan.labels.index("O") if guard is not None else None
        for i, s in enumerate(train_rows):
            x = train_x_list[i]
            replayed = self.key(s) not in data_keys
            targets, weights = self.word_targets(plan, s, x, replayed, weight)
            if replayed and guard is not None:  # maybe unannotated mentions of a new type
                left_out = (targets[:, o_id] == 1.0) & guard(x)
                weights[left_out] = 0.0
                unscored, guarded = unscored + int(left_out.sum()), guarded + len(x)
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
        if guard is not None:
            plan.task_stats["replay_words_unscored"] = {"words": unscored, "of": guarded}
        return rows

    def labelled_features(self, examples, x_list) -> dict[str, Any]:
        """The word features of each tag (for imprinting)."""
        import torch

        out: dict[str, list] = {}
        for s, x in zip(examples, x_list, strict=True):
            for w, tag in enumerate(s.tags[: len(x)]):
                out.setdefault(tag, []).append(x[w])
        return {t: torch.stack(v) for t, v in out.items()}

    def collator(self, tokenizer, max_length: int):
        """:func:`make_token_collator`."""
        return make_token_collator(tokenizer, max_length)

    def from_batch(self, logits, batch):
        """Per-word logits ``[words, labels]`` of a batch (its ``word_index``)."""
        index = batch["word_index"]
        return logits[index >= 0]

    def predict(self, model, tokenizer, examples, options, desc: str | None = None):
        """The whole model's per-word logits of the sentences, one row per word."""
        import torch

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

        gold = [list(s.tags) for s in holdout]
        labels, lengths = plan.labels, plan.holdout_lengths

        def score(logits) -> float:
            per = self._split(logits, lengths)
            pred = tags_from_logits(per, labels, [len(g) for g in gold])
            return float(f1_score(gold, pred))

        return score

    def report(self, plan, holdout, parent_logits, child_logits, tolerance):
        """The entity gate on the holdout, from per-word logits."""
        lengths = plan.holdout_lengths
        n = [len(s.tags) for s in holdout]
        old = [plan.labels[i] for i in plan.old_ids]
        parent = tags_from_logits(self._split(parent_logits, lengths), old, n)
        child = tags_from_logits(self._split(child_logits, lengths), plan.labels, n)
        return compare_entities(
            [list(s.tags) for s in holdout], parent, child, old, plan.labels,
            max_drop=tolerance.max_drop, max_label_drop=tolerance.max_label_drop,
        )  # fmt: skip

    def check(self, parent, child, examples, parent_labels, child_labels, tolerance, *, load,
              **run):  # fmt: skip
        """Each model tags the sentences in turn (:func:`.gate.tag_and_compare`)."""
        return tag_and_compare(
            parent, child, examples, parent_labels, child_labels, tolerance, load=load, **run
        )

    def new_label_examples(self, plan, examples):
        """``None``: whether the new tags are predicted on their words is not checked."""
        return None


def make_token_collator(tokenizer, max_length: int):
    """Batch token rows: stacked word features, or tokenized sentences whose first subwords
    carry their word's target and weight (other positions weigh 0)."""
    import torch

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
