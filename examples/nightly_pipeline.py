"""A nightly retraining job in Python: new intents from data held in memory, trained without
forgetting the old ones, gated, saved with its record, ready for ``headsurgeon push``.

Usage:
    python examples/nightly_pipeline.py PARENT_DIR OUT_DIR [--data DIR] [--form FORM]

``DIR`` holds ``new.csv`` (the new intents' texts), ``replay.csv`` (the parent's training
texts) and ``holdout.csv`` (texts of every intent), ``text,label`` each, as
``examples/banking/`` (the default) does. A pipeline usually has them in memory already (rows
of a database, a DataFrame, a ``datasets.Dataset``): ``--form`` chooses which of ``tuples``,
``dataframe`` or ``dataset`` the script hands to headsurgeon (the last two need pandas or
datasets). Exit codes: 0 saved, 3 the old-label check refused the model (nothing written).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from transformers import AutoModelForSequenceClassification, AutoTokenizer

import headsurgeon
from headsurgeon.train import TrainOptions

Rows = list[tuple[str, str]]


def read_rows(path: Path) -> Rows:
    """``(text, label)`` rows of a CSV file (what a pipeline would get from its store)."""
    with path.open(newline="", encoding="utf-8") as fh:
        return [(row["text"], row["label"]) for row in csv.DictReader(fh)]


def in_form(rows: Rows, form: str) -> Any:
    """The rows as the pipeline holds them: tuples, a pandas DataFrame or a datasets.Dataset."""
    if form == "dataframe":
        import pandas

        return pandas.DataFrame(rows, columns=["text", "label"])
    if form == "dataset":
        import datasets

        columns = {"text": [t for t, _ in rows], "label": [n for _, n in rows]}
        return datasets.Dataset.from_dict(columns)
    return rows


def run(parent: Path, out: Path, data: Path, form: str, options: TrainOptions) -> int:
    """Grow, train, gate and save; return the exit code."""
    model = AutoModelForSequenceClassification.from_pretrained(parent)
    tokenizer = AutoTokenizer.from_pretrained(parent)
    new, replay, holdout = (read_rows(data / f"{n}.csv") for n in ("new", "replay", "holdout"))
    known = set(headsurgeon.labels_of(model.config))
    added = list(dict.fromkeys(label for _, label in new if label not in known))
    before = len(known)
    if added:  # the old labels stay protected: the labels the model had before this
        headsurgeon.add_labels(model, added)
    outcome = headsurgeon.train_model(
        model,
        tokenizer,
        in_form(new, form),
        replay=in_form(replay, form),
        holdout=in_form(holdout, form),
        options=options,
    )
    report: headsurgeon.GateReport | None = outcome.report
    if report is not None:
        print(report.render())
    try:
        folder = outcome.save(out)
    except headsurgeon.GateFailedError as e:
        print(f"not saved: {e}", file=sys.stderr)
        return 3
    grown = len(headsurgeon.labels_of(outcome.model.config)) - before
    print(f"saved {folder}: {grown} new label(s) {', '.join(added)}; push it with:")
    print(f"  headsurgeon push {folder} --repo ORG/NAME")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parent", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / "banking")
    parser.add_argument("--form", choices=("tuples", "dataframe", "dataset"), default="tuples")
    parser.add_argument("--max-steps", type=int, default=-1, help="cap the steps (tests)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    options = TrainOptions(max_steps=args.max_steps, device=args.device)
    return run(args.parent, args.out, args.data, args.form, options)


if __name__ == "__main__":
    sys.exit(main())
