"""The image benchmark's parent: a small CNN classifier trained from a config on the old digits.

No pretrained vision backbone ships in a package transformers loads offline, so the parent is
trained here from scratch: by default a ``ResNetForImageClassification`` built from
``ResNetConfig`` (three basic stages of 64, 128 and 256 channels: stages at
``resnet.encoder.stages.N``, head ``classifier.1``, as pretrained ResNets) on ``parent/`` of
:mod:`image_data`'s digits (the OLD digits only), with a plain torch loop (AdamW, linear warm-up
then cosine decay) on images moved, turned and scaled at random each batch (up to ``shift``
pixels, ``rotate`` degrees, ``scale``). Images go through :mod:`headsurgeon.tasks.image` as a
user's would: read from the folder, decoded to RGB, preprocessed by the ``ViTImageProcessor``
(resize, -1..1) saved with the model.

Which parent: the one whose features tell unseen digits apart. :func:`probe` measures it (the
"oracle"): a linear probe (logistic regression) on the frozen parent's head inputs of
``parent/`` and a draw's 10 images of each new digit, then the best new-digit recall on
``test/`` one common shift of the new classes' scores gives with the old digits' accuracy within
0.5 pt of the parent's; the mean over the benchmark's 5 draws (S1: one new digit, S2: three).
``--compare`` builds every candidate of :data:`CANDIDATES` and prints their figures (measured
on one thread, oracle S1/S2: ResNet 0.983/0.908, ResNet without augmentation 0.920/0.850,
ResNet of half the width 0.993/0.869, the previous ViT recipe 0.387/0.156, that ViT turned and
scaled 0.137/0.131, ConvNeXt 0.580/0.492; each built in 30 to 204 s).

``parent_folder()`` builds the recipe once into ``benchmarks/.cache/parents/image-digits-<key>/``
(weights, ``preprocessor_config.json``, ``MAKING.json`` with the recipe, the data's key, the
old labels' test accuracy, the probe's figures and the wall time) and returns it afterwards.
Progress (preprocessing, each epoch's loss, scoring) goes to stderr; the result to stdout.

Needs ``pip install -e ".[image-bench]"`` (scikit-learn, Pillow).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/image_parent.py            # build (once) and report
    python benchmarks/image_parent.py --rebuild                    # build it again
    OMP_NUM_THREADS=1 python benchmarks/image_parent.py --compare  # every candidate, probed
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

    arch: str = "resnet"  #: "resnet", "vit" or "convnext" (transformers' ...ForImageClassification)
    width: int = 64  #: CNNs: the first stage's channels, doubled at each stage; ViT: hidden size
    depth: int = 3  #: CNNs: stages (one block each); ViT: blocks
    patch_size: int = 8  #: ViT's patches, ConvNeXt's stem (ResNet: its own 7x7 stem)
    image_size: int = 32
    epochs: int = 60
    lr: float = 2e-3
    batch: int = 32
    weight_decay: float = 0.05
    warmup_ratio: float = 0.05
    shift: int = 2  #: each image is moved by up to this many pixels (augmentation)...
    rotate: float = 15.0  #: ...turned by up to this many degrees...
    scale: float = 0.1  #: ...and scaled by up to this fraction
    torch_seed: int = 0
    split: image_data.Split = image_data.Split()

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


RECIPE = ImageRecipe()
#: the parents ``--compare`` builds and probes (``resnet`` is :data:`RECIPE`)
CANDIDATES = {
    "resnet": RECIPE,
    "resnet-plain": dataclasses.replace(RECIPE, shift=0, rotate=0.0, scale=0.0),
    "resnet-small": dataclasses.replace(RECIPE, width=32, epochs=100),
    "vit": ImageRecipe(arch="vit", width=64, depth=4, rotate=0.0, scale=0.0),  # the previous one
    "vit-turned": ImageRecipe(arch="vit", width=64, depth=4, epochs=100),
    "convnext": ImageRecipe(arch="convnext", patch_size=2),
}


def new_model(recipe: ImageRecipe, labels: list[str]):
    """A fresh classifier of the recipe's ``arch`` over ``labels`` and its image processor (grey
    0..255 -> -1..1)."""
    import torch
    import transformers

    ids = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    widths = [recipe.width * 2**i for i in range(recipe.depth)]
    if recipe.arch == "resnet":
        config = transformers.ResNetConfig(
            embedding_size=recipe.width, hidden_sizes=widths, depths=[1] * recipe.depth,
            layer_type="basic", downsample_in_first_stage=False, **ids,
        )  # fmt: skip
        cls = transformers.ResNetForImageClassification
    elif recipe.arch == "convnext":
        config = transformers.ConvNextConfig(
            patch_size=recipe.patch_size, hidden_sizes=widths, depths=[1] * recipe.depth,
            num_stages=recipe.depth, image_size=recipe.image_size, **ids,
        )  # fmt: skip
        cls = transformers.ConvNextForImageClassification
    elif recipe.arch == "vit":
        config = transformers.ViTConfig(
            image_size=recipe.image_size, patch_size=recipe.patch_size, hidden_size=recipe.width,
            num_hidden_layers=recipe.depth, num_attention_heads=4,
            intermediate_size=2 * recipe.width, **ids,
        )  # fmt: skip
        cls = transformers.ViTForImageClassification
    else:
        raise ValueError(f"unknown arch {recipe.arch!r}: resnet, vit or convnext")
    torch.manual_seed(recipe.torch_seed)
    size = {"height": recipe.image_size, "width": recipe.image_size}
    return cls(config), transformers.ViTImageProcessor(size=size)


def pixels(examples, processor, label2id, desc: str):
    """``(pixel_values, labels)`` of every example, as one tensor each (``labels`` ``None``
    without ``label2id``)."""
    import torch

    xs, ys = [], []
    with progress.Step(desc, len(examples), "images") as step:
        for batch in pixel_batches(examples, processor, batch_size=128, label2id=label2id):
            xs.append(batch["pixel_values"])
            ys.extend([batch["labels"]] if label2id is not None else [])
            step.advance(len(batch["pixel_values"]))
    return torch.cat(xs), torch.cat(ys) if ys else None


def augmented(x, recipe: ImageRecipe, generator):
    """``x`` with each image moved by up to ``recipe.shift`` pixels, turned by up to
    ``recipe.rotate`` degrees and scaled by up to ``recipe.scale`` (at random; the border
    filled with -1, the background after the processor's normalisation)."""
    import torch

    if not (recipe.shift or recipe.rotate or recipe.scale):
        return x
    n, side = len(x), x.shape[-1]

    def uniform(limit: float):
        return (torch.rand(n, generator=generator) * 2 - 1) * limit

    angle, zoom = uniform(math.radians(recipe.rotate)), 1 + uniform(recipe.scale)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) / zoom, -torch.sin(angle) / zoom
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) / zoom, torch.cos(angle) / zoom
    theta[:, 0, 2], theta[:, 1, 2] = (
        uniform(2 * recipe.shift / side),
        uniform(2 * recipe.shift / side),
    )
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x + 1, grid, align_corners=False) - 1


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
                loss = model(pixel_values=augmented(x[idx], recipe, g), labels=y[idx]).loss
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


def features(model, x):
    """``(head inputs, logits)`` of ``x``: what a linear probe of the frozen ``model`` reads,
    and what its own head makes of it."""
    import torch

    from headsurgeon.locate import locate_head

    head = model.get_submodule(locate_head(model).paths[0])
    seen = []
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].flatten(1)))
    try:
        with torch.no_grad():
            logits = [model(pixel_values=x[s : s + 256]).logits for s in range(0, len(x), 256)]
    finally:
        hook.remove()
    return torch.cat(seen), torch.cat(logits)


def linear_probe(x, y, classes: int):
    """A multinomial logistic regression of ``y`` on ``x`` (standardised, L2 ``1 / 2n``,
    classes weighed by their inverse frequency, L-BFGS): a function from features to scores."""
    import torch

    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    weight = len(y) / (classes * torch.bincount(y, minlength=classes).clamp(min=1).float())
    linear = torch.nn.Linear(x.shape[1], classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(z), y, weight=weight)
        loss = loss + linear.weight.square().sum() / (2 * len(y))
        loss.backward()
        return loss

    opt.step(closure)
    return lambda feats: linear((feats - mean) / std).detach()


def probe(model, processor, folder: Path, draws: int = 5) -> dict:
    """The oracle of the frozen parent's features (see the module docstring): the mean over
    ``draws`` of the best new-digit recall a linear probe gives with the old digits within the
    gate, for S1 and S2."""
    import statistics
    from types import SimpleNamespace

    import torch
    from incremental import oracle

    old = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    sets = {n: read_image_examples(folder / n) for n in ("parent", "test", "new")}
    new = sorted({e.label for e in sets["new"]}, key=image_data.NAMES.index)
    feats, logits = {}, {}
    for name, examples in sets.items():
        x, _ = pixels(examples, processor, None, f"probe: the {name} images")
        feats[name], logits[name] = features(model, x)
    row = {e.path: i for i, e in enumerate(sets["new"])}
    pools = {n: [e for e in sets["new"] if e.label == n] for n in new}
    found: dict[str, list[float]] = {"S1": [], "S2": []}
    for d in range(draws):
        tasks, shots = image_data.scenarios(d, new, pools)
        for scenario, labels in tasks.items():
            chosen = [row[e.path] for n in labels for e in shots[n]]
            names = [*old, *labels]
            y = torch.tensor([names.index(e.label) for e in sets["parent"]]
                             + [names.index(sets["new"][i].label) for i in chosen])  # fmt: skip
            score = linear_probe(torch.cat([feats["parent"], feats["new"][chosen]]), y, len(names))
            keep = [i for i, e in enumerate(sets["test"]) if e.label in names]
            pair = (logits["test"][keep], score(feats["test"][keep]))
            report = SimpleNamespace(child_labels=names, old_labels=old)
            found[scenario].append(oracle(pair, [sets["test"][i] for i in keep], report, labels))
    return {k: round(statistics.mean(v), 3) for k, v in found.items()} | {"draws": draws}


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
    probed = time.perf_counter()
    oracle = probe(model, processor, folder)
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
        "probe_oracle_recall": oracle,
        "probe_seconds": round(time.perf_counter() - probed, 1),
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
    oracle = info["probe_oracle_recall"]
    return (
        f"image parent: {info['recipe']['arch']} {info['parameters']:,} parameters, "
        f"{len(info['old_labels'])} old labels ({', '.join(info['old_labels'])}), old-label "
        f"test accuracy {info['old_label_test_accuracy']:.4f} on {info['test_images']} images "
        f"(train {info['train_accuracy']:.4f} on {info['train_images']}), linear-probe oracle "
        f"recall S1 {oracle['S1']:.3f} S2 {oracle['S2']:.3f}, trained in "
        f"{info['train_seconds']:.0f} s, built in {info['wall_seconds']:.0f} s on "
        f"{info['torch_threads']} thread(s)\n{folder}"
    )


def compare(names: list[str]) -> str:
    """Build (once) and probe the candidates ``names``; a Markdown table of their figures."""
    lines = [
        "| candidate | arch | parameters | old test accuracy | oracle S1 | oracle S2 | train (s) "
        "| build (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        info = json.loads((parent_folder(CANDIDATES[name]) / "MAKING.json").read_text())
        oracle = info["probe_oracle_recall"]
        lines.append(
            f"| {name} | {info['recipe']['arch']} | {info['parameters']:,} | "
            f"{info['old_label_test_accuracy']:.4f} | {oracle['S1']:.3f} | {oracle['S2']:.3f} | "
            f"{info['train_seconds']:.0f} | {info['wall_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidate", choices=sorted(CANDIDATES), default="resnet",
                   help="which recipe (default: %(default)s, the benchmark's parent)")  # fmt: skip
    p.add_argument("--compare", action="store_true", help="build and probe every candidate")
    p.add_argument("--rebuild", action="store_true", help="train the parent again")
    args = p.parse_args(argv)
    with progress.show():  # progress on stderr: bars on a terminal, plain lines in a log
        if args.compare:
            print(compare(list(CANDIDATES)))
            return
        folder = parent_folder(CANDIDATES[args.candidate], rebuild=args.rebuild)
    print(describe(folder))


if __name__ == "__main__":
    main()
