"""Tests of ``headsurgeon diff``: a trained child's weights against its parent, streamed.

A tiny BERT gets a new label and is trained for a few steps through the CLI (default options:
the top block, the neck and the head train); the diff must then say exactly what moved.
"""

from __future__ import annotations

import json
import random
import shutil

import pytest
from click.testing import CliRunner

from headsurgeon.cli import main
from headsurgeon.diff import diff_checkpoints, pair_labels
from headsurgeon.errors import LabelError, ModelMismatchError
from headsurgeon.safetensors_io import read_header
from tests.common import LABELS, WORDS, save_text_classifier, tiny_bert, tiny_roberta, tree_hashes

NEW = "delta"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    return save_text_classifier(tmp_path_factory.mktemp("diffparent") / "bert")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("diffdata") / "new.csv"
    rows = [" ".join(rng.choices(WORDS[27:], k=5)) for _ in range(8)]
    path.write_text("text,label\n" + "".join(f"{t},{NEW}\n" for t in rows))
    return path


def trained(parent, data, out, *options):
    res = cli(
        "train", parent, "--data", data, "--add", "-o", out, "--max-steps", 3,
        "--batch-size", 8, "--lr", 1e-2, "--device", "cpu", *options,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def child(parent, data, tmp_path_factory):
    return trained(parent, data, tmp_path_factory.mktemp("diffchild") / "tuned")


def groups(report):
    return {g["group"]: g for g in report.groups()}


def test_default_training_moves_only_the_top_block_neck_and_new_rows(parent, child):
    hashes = tree_hashes(parent), tree_hashes(child)
    report = diff_checkpoints(parent, child)
    assert (tree_hashes(parent), tree_hashes(child)) == hashes  # read only
    g = groups(report)
    assert list(g) == ["embeddings", "block 0", "block 1", "neck", "head"]
    assert g["embeddings"]["relative_change"] == 0 and g["embeddings"]["bit_identical"]
    assert g["block 0"]["relative_change"] == 0 and g["block 0"]["max_abs_change"] == 0
    assert g["block 1"]["relative_change"] > 0 and g["neck"]["relative_change"] > 0
    head = report.head
    assert head.paths == ["classifier"] and (head.old_rows, head.new_rows) == (3, 1)
    assert head.old.identical and head.new_norm > 0
    assert report.moved_frozen == [] and not report.shape_changed
    assert not report.only_parent and not report.only_child
    text = report.render()
    assert "3 old rows bit-identical" in text and "1 new rows" in text
    assert "no frozen parameter moved" in text.splitlines()[-1]


def test_freeze_none_moves_every_block_and_unprotected_old_rows(parent, data, tmp_path):
    options = "--freeze", "none", "--no-protect-old-rows"
    report = diff_checkpoints(parent, trained(parent, data, tmp_path / "all", *options))
    g = groups(report)
    for name in ("embeddings", "block 0", "block 1", "neck", "head"):
        assert g[name]["relative_change"] > 0, name
    assert not report.head.old.identical and report.head.old.rel > 0
    assert report.head.changed_labels == LABELS
    assert report.moved_frozen == []  # nothing was frozen
    assert "3 old rows changed (relative" in report.render()
    assert "old rows changed (3 of 3): alpha, beta, gamma" in report.render()


def test_a_frozen_parameter_that_moved_is_flagged(parent, child, tmp_path):
    edited = tmp_path / "edited"
    shutil.copytree(child, edited)
    name = "bert.encoder.layer.0.output.dense.bias"
    info = read_header(edited / "model.safetensors").tensors[name]
    with open(edited / "model.safetensors", "r+b") as fh:
        fh.seek(info.begin)
        fh.write(b"\x00\x00\x80\x3f")  # its first value becomes 1.0
    report = diff_checkpoints(parent, edited)
    assert report.moved_frozen == [name]
    assert groups(report)["block 0"]["moved_but_frozen"] == 1
    assert f"FLAG: {name} was expected frozen but moved" in report.render()
    assert "1 expected frozen but moved" in report.summary()


def test_cli_json_and_plot(parent, child, tmp_path):
    png = tmp_path / "drift.png"
    res = cli("diff", parent, child, "--json", "--plot", png)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc) >= {
        "parent", "child", "summary", "groups", "head", "moved_but_frozen", "train_options",
        "parameters", "only_in_parent", "only_in_child", "shape_changed",
    }  # fmt: skip
    assert doc["head"]["old_rows_bit_identical"] is True and doc["head"]["new_rows"] == 1
    assert doc["train_options"]["freeze"] == "backbone"
    p = {x["name"]: x for x in doc["parameters"]}
    assert p["bert.encoder.layer.0.attention.self.query.weight"]["expected_frozen"] is True
    assert p["bert.encoder.layer.1.attention.self.query.weight"]["expected_frozen"] is False
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png.read_bytes()[16:20]), int.from_bytes(png.read_bytes()[20:24])
    assert 300 <= width <= 2000 and 100 <= height <= 2000
    text = cli("diff", parent, child)
    assert text.exit_code == 0 and "block 0" in text.output and "bit-identical" in text.output


def test_errors_are_one_line(parent, tmp_path):
    res = cli("diff", parent, tmp_path / "missing")
    assert res.exit_code == 1 and "model folder not found" in res.output
    other = save_text_classifier(tmp_path / "rob", builder=tiny_roberta)
    res = cli("diff", parent, other)
    assert res.exit_code == 1 and "its own parent" in res.output
    broken = tmp_path / "broken"
    shutil.copytree(parent, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 4)
    res = cli("diff", parent, broken)
    assert res.exit_code == 1 and "model.safetensors" in res.output
    pickled = tmp_path / "pickled"
    shutil.copytree(parent, pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"never unpickled")
    res = cli("diff", parent, pickled)
    assert res.exit_code == 1 and "diff reads safetensors" in res.output
    assert "--allow-pickle" not in res.output  # diff has no such option
    assert len(res.output.strip().splitlines()) == 1


def test_streams_shards_without_torch(parent, child, tmp_path):
    """A sharded child gives the same report, and the whole diff never imports torch."""
    import subprocess
    import sys

    from headsurgeon.models import load_model

    sharded = tmp_path / "sharded"
    load_model(child).save_pretrained(sharded, max_shard_size="40KB")
    shutil.copy(child / "headsurgeon.json", sharded)
    assert (sharded / "model.safetensors.index.json").is_file()
    whole, split = diff_checkpoints(parent, child), diff_checkpoints(parent, sharded)
    assert split.groups() == whole.groups()
    assert split.head.to_dict() == whole.head.to_dict()
    code = (
        "import sys; from headsurgeon import diff_checkpoints; "
        f"r = diff_checkpoints({str(parent)!r}, {str(sharded)!r}); "
        "assert r.head.old.identical; print(sorted(m for m in sys.modules if m == 'torch'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_add_label_child_without_train_event(parent, tmp_path):
    """add-label: every old row unchanged, the new labels named in the text, JSON and summary."""
    grown = tmp_path / "grown"
    assert cli("add-label", parent, "--name", NEW, "--name", "epsilon", "-o", grown,
               "--init", "zeros", "--bias", "zeros").exit_code == 0  # fmt: skip
    report = diff_checkpoints(parent, grown)
    assert all(g["bit_identical"] for g in report.groups())
    assert (report.head.old_rows, report.head.new_rows, report.head.new_norm) == (3, 2, 0.0)
    assert report.head.new_labels == [NEW, "epsilon"] and report.head.removed_labels == []
    assert report.train_event is None and report.moved_frozen == []
    assert report.summary().startswith("0 of 41 parameters changed")
    assert "3 old rows bit-identical, 2 new rows (delta, epsilon; norm 0)" in report.summary()
    assert "no train event: nothing expected frozen" in report.summary()
    assert f"new (only in {grown}): delta, epsilon" in report.render()
    assert json.loads(cli("diff", parent, grown, "--json").output)["head"]["new_labels"] == [
        NEW, "epsilon",
    ]  # fmt: skip


def test_remove_label_renumbers_rows_without_changing_them(parent, child, tmp_path):
    """remove-label of the first label shifts every other row up by one: still unchanged."""
    smaller = tmp_path / "smaller"
    assert cli("remove-label", child, "alpha", "-o", smaller).exit_code == 0
    report = diff_checkpoints(parent, smaller)
    head = report.head
    assert head.old.identical and head.old.rel == 0 and head.changed_labels == []
    assert (head.old_rows, head.new_rows, head.removed_labels) == (2, 1, ["alpha"])
    assert head.new_labels == [NEW]
    assert head.renumbered == [("beta", 1, 0), ("gamma", 2, 1)]
    assert groups(report)["head"]["bit_identical"]
    assert "2 old rows bit-identical (2 renumbered), 1 removed (alpha)" in report.summary()
    res = cli("diff", parent, smaller)
    assert res.exit_code == 0 and f"removed (only in {parent}): alpha" in res.output
    doc = json.loads(cli("diff", parent, smaller, "--json").output)
    assert doc["head"]["removed_labels"] == ["alpha"] and doc["head"]["old_rows_bit_identical"]
    assert "1 removed (alpha)" in doc["summary"] and "1 removed (alpha)" in res.output


def test_rename_label_pairs_rows_through_the_record(parent, tmp_path):
    """rename beta -> BETA, add a new 'beta', remove alpha: BETA is compared with the parent's
    beta (renumbered), the new 'beta' is new, alpha removed; nothing changed."""
    a, b, c = tmp_path / "renamed", tmp_path / "readded", tmp_path / "removed"
    assert cli("rename-label", parent, "beta", "BETA", "-o", a).exit_code == 0
    assert cli("add-label", a, "--name", "beta", "-o", b).exit_code == 0
    assert cli("remove-label", b, "alpha", "-o", c).exit_code == 0
    report = diff_checkpoints(parent, c)
    head = report.head
    assert head.old.identical and head.changed_labels == []
    assert head.renamed == [("beta", "BETA")] and head.removed_labels == ["alpha"]
    assert head.new_labels == ["beta"] and head.old_rows == 2
    assert head.renumbered == [("BETA", 1, 0), ("gamma", 2, 1)]
    text = cli("diff", parent, c).output
    assert "1 renamed (beta -> BETA)" in text and "1 removed (alpha)" in text
    assert f"renamed (recorded in {c / 'headsurgeon.json'}): beta -> BETA" in text


def test_pair_labels_follows_entity_type_renames():
    record = {"events": [
        {"op": "rename-label", "old": "PER", "new": "PERSON",
         "labels_after": ["O", "B-PERSON", "I-PERSON"]},
    ]}  # fmt: skip
    pairs = pair_labels(["O", "B-PER", "I-PER"], ["O", "B-PERSON", "I-PERSON", "B-LOC"], record)
    assert pairs.pairs == [(0, 0), (1, 1), (2, 2)]
    assert pairs.renamed == [("B-PER", "B-PERSON"), ("I-PER", "I-PERSON")]
    assert pairs.removed == [] and pairs.new_ids == [3]
    plain = pair_labels(["O", "B-PER", "I-PER"], ["O", "B-PERSON", "I-PERSON"])
    assert plain.pairs == [(0, 0)] and plain.removed == ["B-PER", "I-PER"]


NER_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def _wider_bert(path):
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=99, hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64,
        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
    )  # fmt: skip
    transformers.BertForSequenceClassification(cfg).save_pretrained(path)
    return path


@pytest.mark.parametrize(
    ("kind", "build", "says"),
    [
        ("ner", lambda p: tiny_bert(NER_TAGS, "BertForTokenClassification").save_pretrained(p),
         "BertFor(Token|Sequence)Classification: another architecture or task"),
        ("ner-no-arch", lambda p: _no_architectures(
            tiny_bert(NER_TAGS, "BertForTokenClassification"), p), "no label in common"),
        ("other-labels", lambda p: save_text_classifier(p, ["x", "y", "z", "w"]),
         "no label in common"),
        ("wider", _wider_bert, "another hidden size"),
    ],
    ids=["ner", "ner-no-architectures", "other-labels", "wider"],
)  # fmt: skip
def test_unrelated_models_are_refused(parent, tmp_path, kind, build, says):
    """Another task, no shared label or another hidden size: one error line, never identical."""
    other = tmp_path / kind
    build(other)
    before = tree_hashes(parent), tree_hashes(other)
    for a, b in ((parent, other), (other, parent)):
        with pytest.raises(ModelMismatchError, match=says):
            diff_checkpoints(a, b)
        res = cli("diff", a, b, "--json")
        assert res.exit_code == 1 and res.output.startswith("error: ")
        assert len(res.output.strip().splitlines()) == 1 and "bit-identical" not in res.output
        assert "its own parent" in res.output
    assert (tree_hashes(parent), tree_hashes(other)) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [kind]  # nothing written


def _no_architectures(model, path):
    model.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    del config["architectures"]
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda c: [c.pop(k, None) for k in ("id2label", "label2id", "num_labels")],
         "config.json has no id2label"),
        (lambda c: c.update(id2label={"0": "alpha", "1": "alpha", "2": "gamma"},
                            label2id={"alpha": 1, "gamma": 2}),
         "config.json names label 'alpha' more than once (ids 0, 1)"),
    ],
    ids=["no-id2label", "label-twice"],
)  # fmt: skip
def test_config_errors_name_the_folder(parent, tmp_path, edit, says):
    backbone = tmp_path / "backbone"
    shutil.copytree(parent, backbone)
    config = json.loads((backbone / "config.json").read_text())
    edit(config)
    (backbone / "config.json").write_text(json.dumps(config))
    before = tree_hashes(backbone)
    for a, b in ((backbone, parent), (parent, backbone)):
        res = cli("diff", a, b)
        assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
        assert f"error: {backbone / says}" in res.output, res.output
    with pytest.raises(LabelError, match=str(backbone)):
        diff_checkpoints(parent, backbone)
    assert tree_hashes(backbone) == before
