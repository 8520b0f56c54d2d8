"""benchmarks/parents.py: the recipe machinery that builds benchmark parents, on a tiny model."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from headsurgeon.data import Example
from tests.common import WORDS, tiny_tokenizer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "parents.py"


def load_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("parents_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "parents_bench", bench)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_VERBOSITY"):  # the script sets them by default
        monkeypatch.setenv(var, os.environ.get(var, "0" if var == "HF_HUB_OFFLINE" else "warning"))
    spec.loader.exec_module(bench)
    return bench


def tiny_backbone(path):
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    transformers.BertModel(cfg).save_pretrained(path)  # no head, as the real backbone
    tiny_tokenizer().save_pretrained(path)
    return path


def tiny_data(labels=("a", "b", "c", "d", "e"), per_label=6):
    def split(offset):
        return [
            Example(f"{WORDS[i]} {WORDS[(i * 7 + j + offset) % len(WORDS)]}", label)
            for i, label in enumerate(labels)
            for j in range(per_label)
        ]

    return split(0), split(3)


@pytest.mark.slow  # a real Trainer run: ~4 s quiet, ~25 s on a loaded machine
def test_parent_recipe_builds_once_atomically_and_records_how(tmp_path, monkeypatch, capsys):
    bench = load_script(monkeypatch)
    recipe = bench.Recipe("tiny", 3, 4, epochs=1, lr=1e-3, batch=4, max_length=8)
    train, test = tiny_data()
    old = bench.choose_old(recipe, [e.label for e in train])
    assert old == sorted(old) and len(old) == 3
    rows = bench.training_set(recipe, train, old)
    assert len(rows) == 12 and {e.label for e in rows} == set(old)
    assert rows == bench.training_set(recipe, train, old)  # seeded
    assert len(bench.training_set(dataclasses.replace(recipe, per_label=None), train, old)) == 18

    backbone = tiny_backbone(tmp_path / "backbone")
    monkeypatch.setattr(bench, "RECIPES", {"tiny": recipe})
    monkeypatch.setattr(bench, "SHARED", {})
    monkeypatch.setattr(bench, "CACHE", tmp_path / "cache")
    real_build = bench.build
    built = []

    def build(recipe_, out, **kw):
        built.append(out)
        return real_build(recipe_, out, backbone=backbone, data=(train, test), **kw)

    monkeypatch.setattr(bench, "build", build)
    folder = bench.parent_folder("tiny")
    assert folder == tmp_path / "cache" / f"tiny-{recipe.key()}"
    assert os.listdir(tmp_path / "cache") == [folder.name]  # no temp folder left beside it
    making = json.loads((folder / "MAKING.json").read_text())
    assert making["recipe"]["per_label"] == 4 and making["old_labels"] == old
    assert making["train_examples"] == 12 and making["test_examples"] == 18
    assert 0.0 <= making["old_label_test_accuracy"] <= 1.0 and making["wall_seconds"] > 0
    config = json.loads((folder / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(3)] == old
    assert (folder / "tokenizer.json").is_file() and not (folder / "trainer").exists()

    assert bench.parent_folder("tiny") == folder and len(built) == 1  # cached: not rebuilt
    other = dataclasses.replace(recipe, epochs=2)
    assert other.key() != recipe.key()  # a changed recipe is another folder
    bench.main(["tiny"])
    accuracy = making["old_label_test_accuracy"]
    assert f"old-label test accuracy {accuracy:.4f}" in capsys.readouterr().out


def test_failed_parent_build_leaves_nothing(tmp_path, monkeypatch):
    bench = load_script(monkeypatch)
    recipe = bench.Recipe("tiny", 3, 4, epochs=1, lr=1e-3, batch=4, max_length=8)
    train, test = tiny_data()
    monkeypatch.setattr("transformers.Trainer.predict", lambda *a, **k: 1 / 0)
    out = tmp_path / "parent"
    with pytest.raises(ZeroDivisionError):
        bench.build(recipe, out, backbone=tiny_backbone(tmp_path / "bb"), data=(train, test))
    assert sorted(os.listdir(tmp_path)) == ["bb"]


def test_shared_banking_recipe_is_the_shared_parent(tmp_path, monkeypatch, capsys):
    bench = load_script(monkeypatch)
    assert bench.SHARED["banking"].parts[-3:] == ("shared", "parents", "minilm-banking77-old50")
    monkeypatch.setitem(bench.SHARED, "banking", tmp_path)  # worktrees have no ../shared
    monkeypatch.setattr(bench, "build", lambda *a, **k: pytest.fail("shared parent rebuilt"))
    assert bench.parent_folder("banking") == tmp_path
    assert bench.RECIPES["banking"].per_label is None  # every train example, as its MAKING.md
    bench.main(["--list"])
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[::2]] == list(
        bench.RECIPES
    )
