"""The image benchmark's parent: a small ViT classifier trained from a config on the old digits.

No pretrained vision backbone ships in a package transformers loads offline, so the parent is
trained here from scratch: a ``ViTForImageClassification`` built from ``ViTConfig`` (the
recipe's sizes; blocks at ``vit.encoder.layer.N``, head ``classifier``, as pretrained ViTs)
on ``parent/`` of :mod:`image_data`'s digits (the OLD digits only), with a plain torch loop
(AdamW, linear warm-up then cosine decay, each batch shifted by up to ``shift`` pixels). Images
go through :mod:`headsurgeon.tasks.image` as a user's would: read from the folder, decoded to
RGB, preprocessed by the ``ViTImageProcessor`` saved with the model.

``parent_folder()`` builds the recipe once into ``benchmarks/.cache/parents/image-digits-<key>/``
(weights, ``preprocessor_config.json``, ``MAKING.json`` with the recipe, the data's key, the
old labels' test accuracy and the wall time) and returns it afterwards. Progress (preprocessing,
each epoch's loss, scoring) goes to stderr; the result to stdout.

Needs ``pip install -e ".[image-bench]"`` (scikit-learn, Pillow).

Usage:
    OMP_NUM_THREADS=2 python benchmarks/image_parent.py            # build (once) and report
    python benchmarks/image_parent.py --rebuild                    # build it again
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no saving bars in the logs
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # image_data

import image_data  # noqa: E402

from headsurgeon import progress  # noqa: E402
from headsurgeon.tasks.image import pixel_batches, read_image_examples  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache" / "parents"


@dataclasses.dataclass(frozen=True)
class ImageRecipe:
    """How the image parent is made; every field (and the data's key) is part of its cache key."""

    image_size: int = 32
    patch_size: int = 8  #: 16 patches of 32x32 (4 gave 0.979 in 40 epochs at lr 1e-3, 96 s)
    hidden_size: int = 64
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 128
    epochs: int = 60
    lr: float = 2e-3
    batch: int = 32
    weight_decay: float = 0.05
    warmup_ratio: float = 0.05
    shift: int = 2  #: each batch is moved by up to this many pixels (augmentation)
    torch_seed: int = 0
    split: image_data.Split = image_data.Split()

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


RECIPE = ImageRecipe()


def new_model(recipe: ImageRecipe, labels: list[str]):
    """A fresh ViT classifier over ``labels`` and its image processor (grey 0..255 -> -1..1)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=recipe.image_size,
        patch_size=recipe.patch_size,
        hidden_size=recipe.hidden_size,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        intermediate_size=recipe.intermediate_size,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    torch.manual_seed(recipe.torch_seed)
    size = {"height": recipe.image_size, "width": recipe.image_size}
    return ViTForImageClassification(config), ViTImageProcessor(size=size)


def pixels(examples, processor, label2id, desc: str):
    """``(pixel_values, labels)`` of every example, as one tensor each."""
    import torch

    xs, ys = [], []
    with progress.Step(desc, len(examples), "images") as step:
        for batch in pixel_batches(examples, processor, batch_size=128, label2id=label2id):
            xs.append(batch["pixel_values"])
            ys.append(batch["labels"])
            step.advance(len(batch["labels"]))
    return torch.cat(xs), torch.cat(ys)


def shifted(x, shift: int, generator):
    """``x`` moved by a random offset of up to ``shift`` pixels (the border filled with -1,
    the background after the processor's normalisation)."""
    import torch

    if shift <= 0:
        return x
    padded = torch.nn.functional.pad(x, (shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * shift + 1, (2,), generator=generator).tolist()
    return padded[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]


def train(model, x, y, recipe: ImageRecipe) -> list[float]:
    """Train every parameter of ``model`` on ``(x, y)``; return each epoch's mean loss."""
    import torch

    g = torch.Generator().manual_seed(recipe.torch_seed)
    steps_per_epoch = math.ceil(len(y) / recipe.batch)
    total = steps_per_epoch * recipe.epochs
    warmup = max(1, int(recipe.warmup_ratio * total))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup)))
        ),
    )
    losses = []
    model.train()
    with progress.Step(f"training on {len(y)} images", total, "steps") as step:
        for epoch in range(recipe.epochs):
            order, summed = torch.randperm(len(y), generator=g), 0.0
            for s in range(0, len(y), recipe.batch):
                idx = order[s : s + recipe.batch]
                loss = model(pixel_values=shifted(x[idx], recipe.shift, g), labels=y[idx]).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                summed += loss.detach().item() * len(idx)
                step.advance()
            losses.append(summed / len(y))
            step.note(f"epoch {epoch + 1}/{recipe.epochs}: mean loss {losses[-1]:.4f}")
    model.eval()
    return losses


def accuracy(model, x, y) -> float:
    """The share of ``x`` whose argmax is ``y``."""
    import torch

    with torch.no_grad():
        predicted = torch.cat(
            [model(pixel_values=x[s : s + 256]).logits.argmax(-1) for s in range(0, len(y), 256)]
        )
    return float((predicted == y).float().mean())


def build(recipe: ImageRecipe, out: Path, *, data: Path | None = None) -> dict:
    """Train the recipe's parent into ``out`` (atomically) and return its ``MAKING.json``.

    ``data`` (a folder of :mod:`image_data`'s layout) overrides the recipe's split (tests).
    """
    import torch

    start = time.perf_counter()
    folder = Path(data or image_data.data_folder(recipe.split))
    train_set = read_image_examples(folder / "parent")
    labels = sorted({e.label for e in train_set}, key=image_data.NAMES.index)
    label2id = {n: i for i, n in enumerate(labels)}
    test_set = [e for e in read_image_examples(folder / "test") if e.label in label2id]
    model, processor = new_model(recipe, labels)
    x, y = pixels(train_set, processor, label2id, "preprocessing the training images")
    losses = train(model, x, y, recipe)
    train_s = time.perf_counter() - start
    tx, ty = pixels(test_set, processor, label2id, "preprocessing the test images")
    making = {
        "recipe": dataclasses.asdict(recipe),
        "key": recipe.key(),
        "data": str(folder),
        "data_key": json.loads((folder / "SPLITS.json").read_text())["key"],
        "old_labels": labels,
        "train_images": len(train_set),
        "test_images": len(test_set),
        "old_label_test_accuracy": round(accuracy(model, tx, ty), 4),
        "train_accuracy": round(accuracy(model, x, y), 4),
        "epoch_losses": [round(v, 4) for v in losses],
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(train_s, 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
    }
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "MAKING.json").write_text(json.dumps(making, indent=2) + "\n")
        os.replace(tmp, out)  # another process may have won the race: keep its folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return making


def parent_folder(recipe: ImageRecipe = RECIPE, *, rebuild: bool = False) -> Path:
    """The folder of the recipe's parent: the cached one, or built now."""
    out = CACHE / f"image-digits-{recipe.key()}"
    if rebuild and out.is_dir():
        shutil.rmtree(out)
    if not (out / "MAKING.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        image_data.log(
            f"building the image parent into {out} (once); the lines below say what is left"
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
        f"image parent: ViT {info['parameters']:,} parameters, {len(info['old_labels'])} old "
        f"labels ({', '.join(info['old_labels'])}), old-label test accuracy "
        f"{info['old_label_test_accuracy']:.4f} on {info['test_images']} images (train "
        f"{info['train_accuracy']:.4f} on {info['train_images']}), trained in "
        f"{info['train_seconds']:.0f} s, built in {info['wall_seconds']:.0f} s on "
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
