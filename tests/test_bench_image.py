"""benchmarks/image.py: the image benchmark's split, draws, runs, stored results and table, on
tiny synthetic digits and a tiny ResNet parent (no scikit-learn, nothing downloaded)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from headsurgeon.tasks.image import ImageExample
from tests.common import tree_hashes

pytest.importorskip("PIL", reason='Pillow is needed: pip install -e ".[dev]"')
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
NEW = ["one", "seven", "eight"]


def load_script(monkeypatch):
    """benchmarks/image.py as a module (its sys.path changes undone after the test)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("image_bench", BENCHMARKS / "image.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "image_bench", bench)
    spec.loader.exec_module(bench)
    return bench


@pytest.fixture
def bench(monkeypatch, tmp_path):
    """The script, reading 16 synthetic 8x8 "digits" of each digit (the new ones: 13 to draw
    from) and a two-stage ResNet trained for one epoch, everything cached under ``tmp_path``."""
    import numpy as np

    script = load_script(monkeypatch)
    image_data = importlib.import_module("image_data")
    image_parent = importlib.import_module("image_parent")
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(10), 16)
    images = rng.integers(0, 17, (len(targets), 8, 8)).astype(float)
    images[:, 0, :] = targets[:, None]  # a learnable trace of the digit
    monkeypatch.setattr(image_data, "load_digits", lambda: (images, targets))
    monkeypatch.setattr(image_data, "CACHE", tmp_path / "images")
    monkeypatch.setattr(image_parent, "CACHE", tmp_path / "parents")
    split = image_data.Split(old=7, size=16, test=3, holdout=2)
    recipe = image_parent.ImageRecipe(width=8, depth=2, image_size=16, epochs=1, batch=16,
                                      split=split)  # fmt: skip
    monkeypatch.setattr(image_parent, "RECIPE", recipe)
    monkeypatch.setattr(image_parent, "CANDIDATES", {"resnet": recipe})
    monkeypatch.setattr(script, "CACHE", tmp_path / "cache")
    return script


def test_default_split_holds_out_hundreds_and_replays_the_parents_images(monkeypatch):
    """With scikit-learn's counts of each digit, the default split puts over 500 old images in
    the holdout and 60 of each digit in the test split, disjoint, and every other old image in
    parent/ (the parent's training images, which are also the replay)."""
    load_script(monkeypatch)
    image_data = importlib.import_module("image_data")
    counts = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # load_digits().target
    targets = [d for d, n in enumerate(counts) for _ in range(n)]
    split = image_data.Split()
    rows = image_data.assign(split, targets)
    assert set(rows) == {"parent", "holdout", "new", "test"}  # no separate replay folder
    old = split.old_digits()
    assert sum(len(r) for r in rows["holdout"].values()) == 7 * 72 >= 500
    assert all(len(rows["test"][d]) == 60 for d in range(10)) and sorted(rows["holdout"]) == old
    every = [i for by in rows.values() for r in by.values() for i in r]
    assert sorted(every) == list(range(len(targets)))  # each image in exactly one folder
    assert {d: len(r) for d, r in rows["parent"].items()} == {d: counts[d] - 60 - 72 for d in old}


def test_augmentation_moves_turns_and_scales_on_the_background(monkeypatch):
    """The parent's augmentation changes each image differently and fills what it uncovers with
    the background (-1 after the processor); a recipe without it leaves the batch as it is."""
    import torch

    load_script(monkeypatch)
    image_parent = importlib.import_module("image_parent")
    x = torch.full((4, 3, 16, 16), -1.0)
    x[:, :, 6:10, 6:10] = 1.0
    moved = image_parent.augmented(x, image_parent.RECIPE, torch.Generator().manual_seed(0))
    assert moved.shape == x.shape and not torch.equal(moved, x)
    assert len({tuple(m.flatten().tolist()) for m in moved}) == 4
    assert torch.allclose(moved[:, :, 0, :], torch.tensor(-1.0))  # the border is background
    plain = image_parent.ImageRecipe(shift=0, rotate=0.0, scale=0.0)
    assert image_parent.augmented(x, plain, torch.Generator()) is x


def test_draws_are_seeded_and_s1_is_the_first_of_s2(monkeypatch):
    script = load_script(monkeypatch)
    pools = {
        n: [ImageExample(Path(f"new/{n}/{i:04d}.png"), n, "new") for i in range(13)] for n in NEW
    }
    draws = [script.scenarios(d, NEW, pools) for d in range(5)]
    assert draws == [script.scenarios(d, list(reversed(NEW)), pools) for d in range(5)]
    for tasks, shots in draws:
        assert sorted(tasks["S2"]) == sorted(NEW) and tasks["S1"] == tasks["S2"][:1]
        assert sorted(shots) == sorted(NEW)
        for n, chosen in shots.items():
            assert len(chosen) == len(set(chosen)) == 10 and set(chosen) <= set(pools[n])
    assert len({tuple(e.path.name for e in shots[NEW[0]]) for _, shots in draws}) == 5
    assert len({tasks["S1"][0] for tasks, _ in draws}) > 1


@pytest.mark.slow  # 7 runs of tiny models, transformers' Trainer imported: ~11 s on this machine
def test_benchmark_runs_scores_stores_and_reuses_its_results(bench, tmp_path, capsys, monkeypatch):
    plot = tmp_path / "image.png"
    bench.main(["--draws", "1", "--plot", str(plot)])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| S")]
    assert [row.split(" | ")[:2] for row in rows] == [
        [f"| {s}", m] for s in ("S1", "S2") for m in ("defaults", "naive", "joint")
    ]
    assert all(len(row.split(" | ")) == len(bench.COLUMNS) for row in rows)
    assert plot.read_bytes().startswith(b"\x89PNG")
    results = json.loads((tmp_path / "cache" / "results-image.json").read_text())
    assert len(results) == 6
    for key, r in results.items():
        scenario, draw, labels, _, method, spec = json.loads(key)[1:7]
        assert (scenario, draw) in {("S1", 0), ("S2", 0)} and r["labels"] == labels
        assert len(labels) == (1 if scenario == "S1" else 3) and set(labels) <= set(NEW)
        assert r["drop"] == pytest.approx(100 * (r["before"] - r["after"]))
        # the drop is made of the old images sent elsewhere, less those put right
        assert r["drop"] == pytest.approx(r["to_new"] + r["to_old"] - r["fixed"])
        assert all(0 <= v <= 1 for v in (*r["recalls"], *r["precisions"], r["oracle"]))
        assert r["passed"] == (r["holdout_drop"] <= 0.5) and r["time"] >= r["train_s"] > 0
        if method == "defaults":  # train's own gate, on the same holdout, with default options
            # (the saved child, reloaded, scores the holdout as train's check did)
            assert r["gate_passed"] == r["passed"] and r["gate_drop"] == pytest.approx(
                r["holdout_drop"]
            )
            # the replay is the parent's training images: each one replayed or held out
            held = r["stats"]["calibration"]["examples"]
            assert r["stats"]["replay_examples"] + held == 7 * 11
            assert r["stats"]["calibration"]["resolved"] is False  # 100 / 21 pt > 0.25 pt
            assert r["options"] == spec and spec["calibrate"] == "gate" and spec["distill"] == 1
            assert r["time"] >= r["command_s"] >= r["train_s"]
    assert "S1 defaults: drop " in out and "S2 defaults: drop " in out  # against the targets

    making = json.loads(next((tmp_path / "parents").glob("*/MAKING.json")).read_text())
    assert making["recipe"]["arch"] == "resnet" and making["wall_seconds"] > 0
    assert set(making["probe_oracle_recall"]) == {"S1", "S2", "draws"}
    assert all(0 <= making["probe_oracle_recall"][s] <= 1 for s in ("S1", "S2"))

    data = tmp_path / "images"
    parents = tmp_path / "parents"
    before = tree_hashes(data), tree_hashes(parents)
    calls = []
    real_run = bench.Bench.run

    def refuse(self, *a):
        pytest.fail(f"stored result {a} recomputed")

    monkeypatch.setattr(bench.Bench, "run", refuse)
    bench.main(["--draws", "1"])
    assert [r for r in capsys.readouterr().out.splitlines() if r.startswith("| S")] == rows
    monkeypatch.setattr(bench.Bench, "run", lambda self, *a: calls.append(a) or real_run(self, *a))
    bench.main(["--draws", "1", "--methods", "naive", "--scenario", "S1", "--fresh"])
    assert calls == [("naive", "S1", 0)]
    assert (tree_hashes(data), tree_hashes(parents)) == before  # inputs never written
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["results-image.json"]


def test_list_and_unknown_methods(bench, capsys):
    bench.main(["--list"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed[:3] == ["defaults", "naive", "joint"] and "no-calibrate" in listed
    data = SimpleNamespace(data=Path("/d"))  # a variant is defaults with more train arguments
    assert bench.train_args("defaults", data) == []
    assert bench.train_args("head-only", data) == ["--train-layers", "0"]
    with pytest.raises(SystemExit):
        bench.main(["--methods", "naive,nope"])
    assert "unknown method(s) nope" in capsys.readouterr().err


def test_verdicts_say_which_target_is_missed_and_by_what(bench):
    row = {"drop": 0.7, "recall": 0.95, "passed": 4, "draws": 5, "passes": 1.5}
    [line] = bench.verdicts([("S1", "defaults", row), ("S1", "joint", row)])
    assert line == (
        "S1 defaults: drop 0.70 <= 0.5 MISSED, recall 0.950 >= 0.9 met, gate passed 4/5 MISSED, "
        "train x1.5 <= x2 met"
    )
