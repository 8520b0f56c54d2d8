"""The image benchmark's data: scikit-learn's handwritten digits as PNG files, seeded splits.

scikit-learn ships 1,797 grey 8x8 digits (``sklearn.datasets.load_digits``: UCI's "Optical
Recognition of Handwritten Digits", CC BY 4.0; 174 to 183 of each digit), so real images are
there offline. Each is scaled from 0..16 to 0..255, enlarged to ``size`` x ``size`` (bilinear)
and written as an RGB PNG named after its row in the data set, in the ``imagefolder`` layout
(``<split>/<label>/<row>.png``, labels ``zero`` .. ``nine``) that headsurgeon reads:

    parent/   every other image of the OLD digits: what the parent is trained on, and what
              ``train`` replays (a user keeps the parent's training images)
    holdout/  ``holdout`` of each old digit, in no other split: the gate's (check's) data
    new/      every other image of the NEW digits: the pools new classes are drawn from
    test/     ``test`` of every digit, in no other split: the benchmark's figures

What 1,797 images allow: with the defaults (7 old digits, 60 test and 72 holdout images of
each), the holdout holds 504 old images (one is 0.20 pt of the gate's 0.5 pt tolerance), the
test split 420 old ones (0.24 pt each) and 60 of each new digit, and the parent (the replay)
45 to 51 of each old digit, 338 in all.

The old digits are ``random.Random(label_seed).sample(range(10), old)``, sorted; the images of
each digit are shuffled by ``random.Random(f"{sample_seed}:{digit}")`` and cut in that order
(test, holdout, then the rest). ``data_folder()`` builds a split once into
``benchmarks/.cache/images/digits-<key>/`` (atomically, with ``SPLITS.json``: the split, its
key, the old and new labels and every folder's counts) and returns it afterwards.
:func:`scenarios` draws the benchmark's tasks (S1: one new digit, S2: three) and their images.

Needs ``pip install -e ".[image-bench]"`` (scikit-learn, Pillow).

Usage:
    python benchmarks/image_data.py               # build (once) and print the splits
    python benchmarks/image_data.py --size 64     # another image size: another folder
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = Path(__file__).resolve().parent / ".cache" / "images"
NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FOLDERS = ("parent", "holdout", "new", "test")
#: images of each new digit a task learns from
SHOTS = 10
#: new digits at once in S2 (all three)
S2_SIZE = 3
#: the fewest parent (replay) images of an old digit a split may leave (a third is held out
#: to calibrate, the rest trains)
MIN_PARENT = 3


@dataclasses.dataclass(frozen=True)
class Split:
    """How the digits are cut; every field is part of the folder's key."""

    old: int = 7  #: how many digits the parent knows (the others are new)
    size: int = 32  #: images are written size x size
    test: int = 60  #: test images of each digit
    holdout: int = 72  #: holdout images of each old digit (7 x 72 = 504)
    label_seed: int = 0  #: which digits are old
    sample_seed: int = 0  #: which images go where

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def old_digits(self) -> list[int]:
        """The digits the parent knows, sorted."""
        return sorted(random.Random(self.label_seed).sample(range(10), self.old))


def load_digits():
    """``(images, targets)``: scikit-learn's digits (8x8 floats 0..16) and their digits."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        sys.exit('scikit-learn is not installed: pip install -e ".[image-bench]"')
    digits = sklearn_digits()
    return digits.images, digits.target


def assign(split: Split, targets) -> dict[str, dict[int, list[int]]]:
    """``{folder: {digit: [row, ...]}}``: which rows of the data set go to which folder."""
    old = set(split.old_digits())
    out: dict[str, dict[int, list[int]]] = {name: {} for name in FOLDERS}
    for digit in range(10):
        rows = [i for i, t in enumerate(targets) if int(t) == digit]
        random.Random(f"{split.sample_seed}:{digit}").shuffle(rows)
        out["test"][digit], rows = rows[: split.test], rows[split.test :]
        if digit in old:
            out["holdout"][digit], rows = rows[: split.holdout], rows[split.holdout :]
            out["parent"][digit] = rows
        else:
            out["new"][digit] = rows
        least = MIN_PARENT if digit in old else SHOTS
        if len(rows) < least:
            where = "parent" if digit in old else "new"
            sys.exit(f"{NAMES[digit]}: {len(rows)} images left for {where}/, at least {least} "
                     "needed; ask for fewer test or holdout images")  # fmt: skip
    return out


def scenarios(draw: int, new: list[str], pools: dict[str, list]) -> tuple[dict, dict]:
    """Draw ``draw``'s tasks, seeded by ``draw``: ``({"S1": [label], "S2": [labels]}, shots)``
    with ``shots`` the :data:`SHOTS` images (anything with a ``path``) of each drawn label,
    S1's among S2's."""
    rng = random.Random(draw)
    order = rng.sample(sorted(new), len(new))
    chosen = order[:S2_SIZE]
    shots = {n: sorted(rng.sample(pools[n], SHOTS), key=lambda e: e.path.name) for n in chosen}
    return {"S1": chosen[:1], "S2": chosen}, shots


def write_png(pixels, path: Path, size: int) -> None:
    """One 8x8 digit (0..16) as a ``size`` x ``size`` RGB PNG."""
    from PIL import Image

    grey = Image.fromarray((pixels * (255 / 16)).round().clip(0, 255).astype("uint8"), mode="L")
    grey.resize((size, size), Image.Resampling.BILINEAR).convert("RGB").save(path)


def build(split: Split, out: Path) -> dict:
    """Write the split's folders into ``out`` (atomically) and return its ``SPLITS.json``."""
    start = time.perf_counter()
    images, targets = load_digits()
    rows = assign(split, targets)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for folder, by_digit in rows.items():
            for digit, indices in by_digit.items():
                (tmp / folder / NAMES[digit]).mkdir(parents=True)
                for i in indices:
                    write_png(images[i], tmp / folder / NAMES[digit] / f"{i:04d}.png", split.size)
        info = {
            "split": dataclasses.asdict(split),
            "key": split.key(),
            "source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten "
            "digits, CC BY 4.0)",
            "old_labels": [NAMES[d] for d in split.old_digits()],
            "new_labels": [NAMES[d] for d in range(10) if d not in split.old_digits()],
            "counts": {f: {NAMES[d]: len(r) for d, r in by.items()} for f, by in rows.items()},
            "seconds": round(time.perf_counter() - start, 1),
        }
        (tmp / "SPLITS.json").write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, out)  # another process may have won the race: keep its folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def data_folder(split: Split = Split(), *, rebuild: bool = False) -> Path:
    """The folder of ``split``'s images: built now unless it is already in the cache."""
    out = CACHE / f"digits-{split.key()}"
    if rebuild and out.is_dir():
        shutil.rmtree(out)
    if not (out / "SPLITS.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        log(f"writing the digits as {split.size}x{split.size} PNGs into {out} (once)")
        try:
            build(split, out)
        except OSError:
            if not (out / "SPLITS.json").is_file():  # not a lost race: a real failure
                raise
    return out


def splits_info(folder: Path) -> dict:
    """The ``SPLITS.json`` of a built folder."""
    return json.loads((folder / "SPLITS.json").read_text())


def log(message: str) -> None:
    """A line on stderr (the benchmarks' progress; stdout is their result)."""
    print(message, file=sys.stderr, flush=True)


def describe(folder: Path) -> str:
    """What a built folder holds, for people: one line per split."""
    info = splits_info(folder)
    lines = [
        f"{folder}",
        f"old labels ({len(info['old_labels'])}): {', '.join(info['old_labels'])}",
        f"new labels ({len(info['new_labels'])}): {', '.join(info['new_labels'])}",
    ]
    for name in FOLDERS:
        counts = info["counts"][name]
        lines.append(
            f"{name:8} {sum(counts.values()):5} images  "
            + " ".join(f"{k}={v}" for k, v in counts.items())
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=Split.size, help="image side in pixels")
    p.add_argument("--old", type=int, default=Split.old, help="how many digits are old")
    p.add_argument("--rebuild", action="store_true", help="write the folder again")
    args = p.parse_args(argv)
    split = Split(old=args.old, size=args.size)
    start = time.perf_counter()
    folder = data_folder(split, rebuild=args.rebuild)
    print(describe(folder))
    print(
        f"ready in {time.perf_counter() - start:.1f} s (built in {splits_info(folder)['seconds']} s)"
    )


if __name__ == "__main__":
    main()
