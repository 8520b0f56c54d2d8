"""Models that train, check and sweep cannot handle correctly are refused, never processed wrongly.

A multi-label classifier (``problem_type: multi_label_classification``) was trained with
softmax cross-entropy and gated on argmax accuracy with exit 0. Multi-label TEXT classifiers
are now trained as such (tests/test_multilabel.py); a multi-label image classifier, which they
do not handle, is refused with one line saying why, before any file is written, while the
surgery commands (which are right for every task) keep working on it; an image classifier given
a text file is told what it reads.
"""

import json

import pytest
from click.testing import CliRunner

from headsurgeon.cli import main
from headsurgeon.errors import UnsupportedModelError
from tests.common import LABELS, label_kwargs, tree_hashes


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _multi_label(names=LABELS):
    """A tiny multi-label IMAGE classifier (train, check and sweep handle multi-label text)."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=8, problem_type="multi_label_classification", **label_kwargs(names),
    )  # fmt: skip
    return ViTForImageClassification(config)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """A tiny multi-label image classifier with an image processor, then grown by add-label."""
    from transformers import ViTImageProcessor

    root = tmp_path_factory.mktemp("multi")
    _multi_label().save_pretrained(root / "parent")
    ViTImageProcessor(size={"height": 8, "width": 8}).save_pretrained(root / "parent")
    assert run("add-label", root / "parent", "--name", "delta", "-o", root / "grown").exit_code == 0
    rows = ["image,label"] + [f"img{i}.png,{n}" for i, n in enumerate(LABELS + ["delta"])]
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root


def _one_error_line(res, *words):
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert all(w in lines[0] for w in words), lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["train", "{g}", "--data", "{d}", "--replay", "{d}", "--holdout", "{d}", "-o", "{o}"],
        ["check", "{p}", "{g}", "--holdout", "{d}"],
        ["sweep", "{g}", "--data", "{d}", "--holdout", "{d}", "--layers", "0", "-o", "{o}"],
    ],
    ids=["train", "check", "sweep"],
)
def test_a_multi_label_model_is_refused_by_train_check_and_sweep(multi, tmp_path, command):
    before = tree_hashes(multi)
    paths = {"p": multi / "parent", "g": multi / "grown", "d": multi / "data.csv"}
    args = [a.format(o=tmp_path / "out", **paths) for a in command]
    _one_error_line(run(*args), "multi-label", "multi_label_classification", "refused")
    assert tree_hashes(multi) == before and not (tmp_path / "out").exists()
    assert not list(multi.glob(".*headsurgeon*"))


def test_surgery_and_inspect_still_work_on_a_multi_label_model(multi):
    res = run("inspect", multi / "grown")
    assert res.exit_code == 0, res.output
    assert "problem type: multi_label_classification (train, check and sweep refuse it)" in (
        res.output
    )
    info = json.loads(run("inspect", multi / "grown", "--json").output)
    assert info["problem_type"] == "multi_label_classification"
    assert info["labels"] == LABELS + ["delta"]


def test_the_python_api_refuses_a_multi_label_model(multi):
    from headsurgeon import check_old_labels
    from headsurgeon.data import Example
    from headsurgeon.train import train_model

    model = _multi_label(LABELS + ["delta"])
    with pytest.raises(UnsupportedModelError, match="multi-label"):
        train_model(model, None, [Example("img.png", "delta")], old_labels=LABELS)
    with pytest.raises(UnsupportedModelError, match="multi-label"):
        check_old_labels(multi / "parent", (model, None), multi / "data.csv")


def test_an_image_classifier_given_text_data_says_what_it_reads(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=8, id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1},
    )  # fmt: skip
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    (tmp_path / "data.csv").write_text("text,label\nx,cat\n")
    before = tree_hashes(tmp_path)
    res = run("train", tmp_path / "vit", "--data", tmp_path / "data.csv", "-o", tmp_path / "o")
    _one_error_line(res, "text-classification data", "the model classifies images")
    assert tree_hashes(tmp_path) == before and not (tmp_path / "o").exists()
