"""Grow a classifier's label set in memory and save it: the Python API in 20 lines.

Usage: python examples/grow_in_memory.py PARENT_DIR OUT_DIR NEW_LABEL [NEW_LABEL ...]
"""

import sys

import torch
from transformers import AutoModelForSequenceClassification

import headsurgeon


def main(parent: str, out: str, names: list[str]) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(parent)
    old = {
        p: model.get_submodule(p).weight.detach().clone()
        for p in headsurgeon.locate_head(model).paths
    }
    result = headsurgeon.add_labels(model, names, init="mean")
    for path, weight in old.items():  # every old row is bit-identical
        assert torch.equal(model.get_submodule(path).weight[: len(weight)], weight)
    model.save_pretrained(out)
    print(
        f"{', '.join(result.head.paths)}: {len(result.labels_before)} -> {len(result.labels_after)} labels"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
