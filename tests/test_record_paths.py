"""``headsurgeon.json`` travels with the model (``push`` uploads it): it names its parent and its
data files without a local path, and records of older versions (absolute paths) still read.

The end-to-end promises (a grown, trained and checked model pushed to the test Hub holds no path
of the test's folder; an old record is uploaded rewritten, the local file unchanged) are in
``tests/test_hub.py``; here: what the record keeps, what ``sweep`` records, and what the card
and the readers of the record make of both shapes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
from click.testing import CliRunner

from headsurgeon import record as rec
from headsurgeon.cli import main
from tests import test_train as _train
from tests.common import LABELS, tree_hashes

# the session fixtures of test_train (a tiny parent trained on alpha/beta/gamma; its data files)
files, parent_dir = _train.files, _train.parent_dir


def _no_path_of(folder, root) -> None:
    """No file under ``folder`` holds the path of ``root`` (as given or resolved)."""
    needles = {str(root).encode(), os.path.realpath(root).encode()}
    holding = [p.name for p in folder.iterdir() if any(n in p.read_bytes() for n in needles)]
    assert holding == []


@pytest.mark.parametrize(
    "source, kept",
    [
        ("/home/me/models/minilm-banking77-old50", "minilm-banking77-old50"),
        ("/home/me/models/minilm/", "minilm"),
        ("C:\\Users\\me\\models\\minilm", "minilm"),
        ("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
        ("/root/.cache/huggingface/hub/models--org--m/snapshots/abc", "org/m"),
        ("./org/m", "m"),
        ("../parent", "parent"),
    ],
)
def test_the_parent_is_kept_as_a_hub_id_or_a_folder_name(source, kept):
    assert rec.parent_ref(source) == kept
    assert rec.new_record(source, LABELS)["parent"] == kept


def test_an_existing_local_folder_named_like_a_hub_id_is_kept_by_its_name(tmp_path, monkeypatch):
    (tmp_path / "org" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert rec.parent_ref("org/model") == "model"
    assert rec.parent_ref(".") == tmp_path.name


def test_a_data_file_is_kept_as_name_hash_and_count(tmp_path):
    data = tmp_path / "deep" / "new.csv"
    data.parent.mkdir()
    data.write_text("text,label\ncard lost,delta\n")
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    assert rec.file_ref(data, 1) == {"name": "new.csv", "sha256": sha, "examples": 1}
    assert rec.file_ref(str(data)) == {"name": "new.csv", "sha256": sha}
    assert rec.file_ref(None) is None


def test_an_old_record_reads_the_same_and_publishes_without_paths(tmp_path):
    old = {
        "format": 1,
        "parent": "/home/me/models/minilm",
        "parent_labels": LABELS,
        "events": [
            {"op": "add-label", "added": ["data"], "init": "mean", "initialised": {"data": "x/y"}},
            {"op": "rename-label", "renamed": {"output": "card/lost"}},
            {"op": "train", "data": "/home/me/d/new.csv", "replay": None, "trained_labels":
             ["data"], "check": {"passed": True, "holdout": "C:\\d\\hold.csv"}},
            {"op": "train", "data": {"name": "/x/new.csv", "sha256": "ab", "examples": 3},
             "sweep": {"runs": [{"setting": "0"}]}},
            {"op": "check", "parent": "org/parent", "holdout": "rel/dir/hold.csv"},
        ],
    }  # fmt: skip
    public, places = rec.public_record(old)
    assert places == [
        "parent",
        "events[2].data",
        "events[2].check.holdout",
        "events[3].data",
        "events[4].holdout",
    ]
    assert public["parent"] == "minilm" and public["events"][4]["parent"] == "org/parent"
    assert public["events"][2]["data"] == "new.csv"
    assert public["events"][2]["check"]["holdout"] == "hold.csv"
    assert public["events"][3]["data"] == {"name": "new.csv", "sha256": "ab", "examples": 3}
    assert public["events"][4]["holdout"] == "hold.csv"
    assert public["events"][:2] == old["events"][:2]  # labels named "data", "output": no paths
    assert old["parent"] == "/home/me/models/minilm"  # the record itself is left alone
    assert rec.public_record(public) == (public, [])  # a clean record comes back unchanged
    for record in (old, public):  # the readers of the record work on both shapes
        assert rec.old_labels(record, [*LABELS, "data"]) == LABELS
        assert rec.trained_labels(record) == ["data"]


def test_card_names_data_files_by_name_count_and_hash(tmp_path, tiny_text_folder):
    from headsurgeon.card import build_card

    folder = shutil.copytree(tiny_text_folder, tmp_path / "m")
    record = rec.new_record(tmp_path / "models" / "parent", LABELS)
    sha = "0123456789abcdef" * 4
    rec.add_event(record, "train", data={"name": "new.csv", "sha256": sha, "examples": 80},
                  replay=None, holdout={"name": "hold.csv", "examples": 12})  # fmt: skip
    rec.write_record(folder, record)
    card = build_card(folder, "me/card")
    assert "the local model `parent`" in card
    assert "data `new.csv` (80 examples, sha256 `0123456789ab`), holdout `hold.csv` (12 examples)" in card  # fmt: skip
    assert str(tmp_path) not in card and sha not in card


def test_sweep_records_file_names_hashes_and_counts(parent_dir, files, tmp_path):
    """The best run's ``train`` event names the files sweep read, never where they are."""
    parent = shutil.copytree(parent_dir, tmp_path / "parent")
    data = {k: shutil.copy(files[k], tmp_path / files[k].name) for k in ("new_csv", "old_csv", "hold_csv")}  # fmt: skip
    before = tree_hashes(tmp_path)
    out = tmp_path / "best"
    argv = ["sweep", parent, "--add", "--layers", "0", "-o", out, "--max-drop", "100",
            "--data", data["new_csv"], "--replay", data["old_csv"], "--holdout", data["hold_csv"],
            "--max-steps", "2", "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(main, [str(a) for a in argv])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "headsurgeon.json").read_text())
    assert record["parent"] == "parent"
    event = record["events"][-1]
    sha = hashlib.sha256(data["new_csv"].read_bytes()).hexdigest()
    assert event["data"] == {"name": "new.csv", "sha256": sha, "examples": len(files["new"])}
    assert event["replay"]["name"] == "old.csv" and event["replay"]["examples"] == len(files["old"])
    assert event["holdout"]["name"] == "hold.csv"
    _no_path_of(out, tmp_path)
    assert {k: v for k, v in tree_hashes(tmp_path).items() if not k.startswith("best/")} == before
