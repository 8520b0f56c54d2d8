"""Text classification: one label per text (``...ForSequenceClassification``, single-label).

:class:`TextTask` is what ``train``, ``check`` and ``sweep`` ask of a text classifier: examples
are :class:`~headsurgeon.data.Example` s (a text and its label) read from CSV/TSV/JSONL, keyed
by their text; a text's feature is one vector (the head's input at its one position); a
training row is a label, a weight, and features or a text; the gate is the accuracy gate
(:mod:`.accuracy`). What it shares with the other single-label tasks (rows, scoring, the gate)
is :class:`~.single.OneLabelTask`'s. :func:`make_collator` batches its rows.

No torch at import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..data import Columns, Example, read_examples
from . import SEQUENCE
from . import rows as _rows
from .single import (  # noqa: F401  (the text task's defaults, named from here before)
    MIN_OLD_EXAMPLES,
    OPTION_DEFAULTS,
    SEVERAL_NEW_EPOCHS,
    OneLabelTask,
    label_batch,
)
from .sniff import check_data_task

logger = logging.getLogger(__name__)


class TextTask(OneLabelTask):
    """One label per text (see the module docstring); implements
    :class:`~headsurgeon.tasks.base.Task`."""

    name = SEQUENCE
    unit = "texts"
    example_type = Example

    def input_column(self, columns: Columns) -> str:
        """The texts' column."""
        return columns.text

    def make_example(self, value, label: str, source: str, number: int, at: str) -> Example:
        """``Example(text, label)``, the text checked."""
        return Example(_rows.text(value, at, "text"), label)

    def preprocessor(self, model_dir, trust_remote_code: bool = False):
        """The tokenizer saved in ``model_dir`` (:func:`~headsurgeon.predict.load_text_tokenizer`:
        a folder without tokenizer files is refused)."""
        from ..predict import load_text_tokenizer

        return load_text_tokenizer(model_dir, trust_remote_code)

    def read_data(self, files, labels, add, columns):
        """``(data, replay, holdout or None, labels to add)`` read from ``files`` (a
        :class:`~headsurgeon.train.folders.DataFiles`; ``columns``: a
        :class:`~headsurgeon.data.Columns`, or the text and label columns)."""
        for option, path in files.given():
            check_data_task(path, token_model=False, option=option)
        columns = Columns.of(columns)
        read = {"text_column": columns.text, "label_column": columns.label}
        return self._read_files(files, labels, add, lambda path: read_examples(path, **read))

    def read_holdout(self, holdout, parent_labels, child_labels, columns) -> list:
        """``check``'s holdout: a file's examples (``columns``: a
        :class:`~headsurgeon.data.Columns`, or the text and label columns) or the given
        examples, once they hold only the two models' labels and some old one.

        Raises:
            DataError: token data, an unreadable file, no example, an unknown label, no
                example of an old label.
        """
        columns = Columns.of(columns)

        def read(path):
            check_data_task(path, token_model=False, option="--holdout")
            return read_examples(path, text_column=columns.text, label_column=columns.label)

        return self._read_holdout(holdout, parent_labels, child_labels, read)

    def key(self, example) -> str:
        """An example's key: its text."""
        return example.text

    def tokenizer(self, tokenizer):
        """The model's tokenizer as it is."""
        return tokenizer

    def collator(self, tokenizer, max_length: int):
        """:func:`make_collator`."""
        return make_collator(tokenizer, max_length)


def make_collator(tokenizer, max_length: int) -> Callable[[list[dict]], dict]:
    """Batch rows: stack features, or tokenize texts with dynamic padding."""
    import torch

    def collate(rows: list[dict]) -> dict:
        batch = label_batch(rows)
        if "features" in rows[0]:
            batch["features"] = torch.stack([r["features"] for r in rows])
            return batch
        batch.update(
            tokenizer(
                [r["text"] for r in rows],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
        )
        if "hidden" in rows[0]:  # cached block inputs, padded like the tokens
            width = batch["input_ids"].shape[1]
            hidden = torch.zeros(len(rows), width, rows[0]["hidden"].shape[-1])
            for i, r in enumerate(rows):
                hidden[i, : len(r["hidden"])] = r["hidden"]
            batch["hidden"] = hidden
        return batch

    return collate
