"""Teach a named-entity tagger a new entity type in Python, without forgetting the old ones.

Usage:
    python examples/ner_pipeline.py PARENT_DIR OUT_DIR [--data DIR]

``DIR`` holds ``new.conll`` (sentences tagged for the new type only, as an annotator of the
new type writes them), ``replay.conll`` (the parent's training sentences) and
``holdout.conll`` (sentences tagged for every type), as ``examples/ner/`` (the default) does.
The new sentences go to headsurgeon as ``(tokens, tags)`` pairs, the form an annotation tool
exports; the holdout as its file. The new entity types are those of the new data the parent
lacks; the gate is old-type entity F1. Exit codes: 0 saved, 3 the check refused the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transformers import AutoModelForTokenClassification, AutoTokenizer

import headsurgeon
from headsurgeon.train import TrainOptions

Pairs = list[tuple[list[str], list[str]]]


def pairs(path: Path) -> Pairs:
    """``(tokens, tags)`` of each sentence of a CoNLL file."""
    return [(list(s.tokens), list(s.tags)) for s in headsurgeon.read_sentences(path)]


def entity_types(data: Pairs) -> list[str]:
    """The entity types tagged in ``data`` (``B-NORP`` -> ``NORP``), in order of appearance."""
    return list(dict.fromkeys(tag[2:] for _, tags in data for tag in tags if tag != "O"))


def run(parent: Path, out: Path, data: Path, options: TrainOptions, max_drop: float | None) -> int:
    """Grow, train, gate and save; return the exit code."""
    model = AutoModelForTokenClassification.from_pretrained(parent)
    tokenizer = AutoTokenizer.from_pretrained(parent)
    new, replay = pairs(data / "new.conll"), pairs(data / "replay.conll")
    have = {tag[2:] for tag in headsurgeon.labels_of(model.config) if tag != "O"}
    added = [t for t in entity_types(new) if t not in have]
    if added:  # an entity type adds its B- and I- tags; the old ones stay protected
        headsurgeon.add_labels(model, added)
    holdout = data / "holdout.conll"  # a file works as well as examples in memory
    outcome = headsurgeon.train_model(
        model,
        tokenizer,
        new,
        replay=replay,
        holdout=holdout,
        options=options,
        tolerance=headsurgeon.Tolerance(max_drop),
    )
    if outcome.report is not None:
        print(outcome.report.render())
    try:
        folder = outcome.save(out)
    except headsurgeon.GateFailedError as e:
        print(f"not saved: {e}", file=sys.stderr)
        return 3
    print(f"saved {folder}: new entity type(s) {', '.join(added)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parent", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / "ner")
    parser.add_argument("--max-drop", type=float, default=None, help="the gate's tolerance")
    parser.add_argument("--max-steps", type=int, default=-1, help="cap the steps (tests)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    options = TrainOptions(max_steps=args.max_steps, device=args.device)
    return run(args.parent, args.out, args.data, options, args.max_drop)


if __name__ == "__main__":
    sys.exit(main())
