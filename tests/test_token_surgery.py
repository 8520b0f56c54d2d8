"""Surgery by entity type on token classifiers (NER): in memory, on disk, through the CLI.

``add-label ner/ --name PRODUCT`` adds every tag of the model's scheme for ``PRODUCT``;
``remove-label``/``rename-label`` take an entity type for all its tags; ``inspect`` names the task,
the scheme and the entity types. Every tiny token-classification class of the matrix
(``tests/zoo.py``) is grown by an entity type both ways; classes outside :data:`QUICK` are
marked ``slow``.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

import headsurgeon
from headsurgeon.checkpoint import (
    add_labels_to_checkpoint,
    inspect_checkpoint,
    remove_labels_from_checkpoint,
    rename_label_in_checkpoint,
)
from headsurgeon.cli import main
from headsurgeon.errors import LabelError
from headsurgeon.surgery import remove_labels, rename_label
from tests import zoo
from tests.common import tiny_bert, tree_hashes
from tests.test_matrix import buildable

BIO = ("O", "B-PER", "I-PER")
GROWN = [*BIO, "B-PRODUCT", "I-PRODUCT"]
#: token classes grown in the quick loop: encoders with each head layout, and decoders
QUICK = {
    "BertForTokenClassification",
    "RobertaForTokenClassification",
    "DistilBertForTokenClassification",
    "LlamaForTokenClassification",
    "GPT2ForTokenClassification",
}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _reload(model_cls, folder):
    again, info = model_cls.from_pretrained(folder, output_loading_info=True)
    problems = {k: info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    assert not any(problems.values()), problems
    return again


def _token_params():
    return [
        pytest.param(e, id=e.name, marks=() if e.name in QUICK else pytest.mark.slow)
        for e in zoo.entries()
        if e.task == "token"
    ]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("entry", _token_params())
def test_every_token_classifier_grows_by_entity_type(entry, tmp_path, one_thread):
    """In memory and on disk: B-PRODUCT, I-PRODUCT appended, old rows bit-identical, clean reload,
    and the two paths write the same model."""
    config = zoo.tiny_config(entry, BIO)
    try:
        model = zoo.build(entry, config)
    except ImportError:
        buildable(entry)  # skips with the reason
        raise
    parent = tmp_path / "parent"
    model.save_pretrained(parent)
    old = {k: v.clone() for k, v in model.state_dict().items()}

    result = headsurgeon.add_labels(model, ["PRODUCT"])
    assert result.added == ["B-PRODUCT", "I-PRODUCT"] and result.labels_after == GROWN
    for path in result.head.paths:
        for name in ("weight", "bias"):
            key = f"{path}.{name}"
            if key in old:
                grown = model.state_dict()[key]
                assert grown.shape[0] == len(GROWN) and torch.equal(grown[: len(BIO)], old[key])
    model.save_pretrained(tmp_path / "memory")

    add_labels_to_checkpoint(parent, ["PRODUCT"], tmp_path / "disk")
    assert inspect_checkpoint(tmp_path / "disk")["entity_types"] == ["PER", "PRODUCT"]
    for folder in ("memory", "disk"):
        again = _reload(type(model), tmp_path / folder)
        assert [again.config.id2label[i] for i in range(len(GROWN))] == GROWN, folder
        assert again.config.label2id == {n: i for i, n in enumerate(GROWN)}, folder
        for key, value in again.state_dict().items():
            assert torch.equal(value, model.state_dict()[key]), (folder, key)


@pytest.fixture
def ner(tmp_path):
    """A factory: a tiny BERT token classifier with ``labels`` saved in ``tmp_path/name``."""

    def make(labels, name="ner"):
        folder = tmp_path / name
        tiny_bert(list(labels), "BertForTokenClassification").save_pretrained(folder)
        return folder

    return make


@pytest.mark.parametrize(
    "labels, added",
    [
        (["O", "B-PER", "I-PER"], ["B-PRODUCT", "I-PRODUCT"]),
        (
            ["O", "B-PER", "I-PER", "E-PER", "S-PER"],
            ["B-PRODUCT", "I-PRODUCT", "E-PRODUCT", "S-PRODUCT"],
        ),
        (["O", "I-PER", "I-ORG"], ["I-PRODUCT"]),
    ],
    ids=["BIO", "BIOES", "IO"],
)
def test_cli_adds_the_schemes_tags(ner, tmp_path, labels, added):
    src = ner(labels)
    res = run("add-label", src, "--name", "PRODUCT", "-o", tmp_path / "grown", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["added"] == added
    info = inspect_checkpoint(tmp_path / "grown")
    assert info["labels"] == [*labels, *added] and info["head"]["out_features"] == len(
        labels + added
    )
    again = _reload(type(tiny_bert(labels, "BertForTokenClassification")), tmp_path / "grown")
    parent = _reload(type(again), src)
    assert torch.equal(again.classifier.weight[: len(labels)], parent.classifier.weight)


def test_inspect_names_task_scheme_and_entity_types(ner):
    bio = ner(["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"])
    res = run("inspect", bio)
    assert res.exit_code == 0, res.output
    want = "task:         token classification, scheme: BIO, entity types: PER, ORG, LOC, MISC"
    assert want in res.output.splitlines()
    info = json.loads(run("inspect", bio, "--json").output)
    assert info["task"] == "token-classification" and info["scheme"] == "BIO"
    assert info["entity_types"] == ["PER", "ORG", "LOC", "MISC"]
    none = ner(["O", "B-PER", "M-PER", "E-PER"], "bmes")
    assert (
        "task:         token classification, scheme: none recognised" in run("inspect", none).output
    )
    info = json.loads(run("inspect", none, "--json").output)
    assert info["scheme"] is None and info["entity_types"] == []


def test_inspect_of_a_token_model_imports_no_torch(ner):
    from tests.test_cli import _inspect_fresh

    seen = _inspect_fresh(ner(["O", "B_PER", "I_PER"]))
    assert seen["heavy"] == []
    assert seen["info"]["scheme"] == "BIO" and seen["info"]["entity_types"] == ["PER"]


def test_remove_and_rename_by_entity_type(ner, tmp_path):
    src = ner(["O", "B-PER", "I-PER", "B-ORG", "I-ORG"])
    res = run("remove-label", src, "PER", "-o", tmp_path / "small", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["removed"] == ["B-PER", "I-PER"]
    small = _reload(type(tiny_bert(["O"], "BertForTokenClassification")), tmp_path / "small")
    parent = _reload(type(small), src)
    assert torch.equal(small.classifier.weight, parent.classifier.weight[[0, 3, 4]])
    res = run("rename-label", tmp_path / "small", "ORG", "COMPANY")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("renamed ORG -> COMPANY (ids 1:B-COMPANY, 2:I-COMPANY)")
    assert inspect_checkpoint(tmp_path / "small")["labels"] == ["O", "B-COMPANY", "I-COMPANY"]
    events = json.loads((tmp_path / "small" / "headsurgeon.json").read_text())["events"]
    assert [e["op"] for e in events] == ["remove-label", "rename-label"]


def test_in_memory_remove_and_rename_by_entity_type():
    model = tiny_bert(["O", "B-PER", "I-PER", "B-ORG", "I-ORG"], "BertForTokenClassification")
    weight = model.classifier.weight.detach().clone()
    result = remove_labels(model, ["ORG"])
    assert result.removed == ["B-ORG", "I-ORG"] and model.num_labels == 3
    assert torch.equal(model.classifier.weight, weight[:3])
    assert rename_label(model, "PER", "PERSON") == ["O", "B-PERSON", "I-PERSON"]
    assert model.config.label2id == {"O": 0, "B-PERSON": 1, "I-PERSON": 2}
    with pytest.raises(LabelError, match="'PERSON' is already in the model"):
        headsurgeon.add_labels(model, ["PERSON"])


def test_raw_tags_and_no_scheme(ner, tmp_path):
    """No recognisable scheme: adding an entity type is refused; raw tags work (and on BIO)."""
    bmes = ner(["O", "B-PER", "M-PER", "E-PER", "S-PER"])
    before = tree_hashes(bmes)
    res = run("add-label", bmes, "--name", "PRODUCT")
    assert res.exit_code == 1 and res.output.count("\n") == 1
    assert "follow no tagging scheme" in res.output and "name the raw tags" in res.output
    assert tree_hashes(bmes) == before
    res = run("add-label", bmes, "--name", "B-PRODUCT", "--name", "M-PRODUCT", "-o", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert inspect_checkpoint(tmp_path / "o")["labels"][-2:] == ["B-PRODUCT", "M-PRODUCT"]
    bio = ner(["O", "B-PER", "I-PER"], "bio")
    add_labels_to_checkpoint(bio, ["B-X", "E-PER"])  # raw tags stay themselves
    assert inspect_checkpoint(bio)["labels"] == ["O", "B-PER", "I-PER", "B-X", "E-PER"]


def test_a_plain_label_token_model_grows_by_name(ner, tmp_path):
    """A tagger with no tag-shaped label (POS: NOUN, VERB) grows by plain names as before."""
    pos = ner(["NOUN", "VERB", "ADJ"])
    assert add_labels_to_checkpoint(pos, ["ADV"], tmp_path / "o").added == ["ADV"]
    assert remove_labels_from_checkpoint(tmp_path / "o", ["VERB"]).removed == ["VERB"]
    assert rename_label_in_checkpoint(tmp_path / "o", "ADV", "ADVERB")[-1] == "ADVERB"


NER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG"]


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "output"])
@pytest.mark.parametrize(
    "labels, args, message",
    [
        (
            NER,
            ["add-label", "--name", "PER"],
            "entity type 'PER' is already in the model (B-PER, I-PER)",
        ),
        (NER, ["add-label", "--name", "LOC", "--name", "LOC"], "more than once: B-LOC, I-LOC"),
        (NER, ["add-label", "--name", "B-PER"], "already in the model: B-PER"),
        (NER, ["remove-label", "NOPE"], "'NOPE' is neither a label nor an entity type"),
        (NER[:3], ["remove-label", "PER", "O"], "cannot remove every label"),
        (
            NER,
            ["remove-label", "O"],
            "removing O (the tag of tokens outside any entity) would leave tags that follow no "
            "scheme (the model's is BIO): keep O and remove entity types by name (remove-label "
            "MODEL PER removes B-PER, I-PER), or pass --force",
        ),
        (
            NER,
            ["remove-label", "B-ORG"],
            "removing B-ORG but not I-ORG would break the model's BIO tagging of ORG: remove the "
            "whole type by its name (remove-label MODEL ORG removes B-ORG, I-ORG), or pass --force",
        ),
        (NER, ["rename-label", "PER", "ORG"], "'ORG' is already an entity type or label"),
        (NER, ["rename-label", "PER", "B-PERSON"], "shaped like a tag"),
        (NER[1:], ["add-label", "--name", "LOC"], "follow no tagging scheme"),  # no O
    ],
)
def test_errors_are_one_line_and_change_nothing(ner, tmp_path, labels, args, message, in_place):
    src = ner(labels)
    before = tree_hashes(src)
    command, *rest = args
    out = [] if in_place else ["-o", tmp_path / "out"]
    res = run(command, src, *rest, *out)
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert message in res.output, res.output
    assert tree_hashes(src) == before and not (tmp_path / "out").exists()
    assert sorted(p.name for p in src.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("names", [["O"], ["B-PER"], ["I-ORG", "O"]])
def test_force_removes_tags_that_break_the_scheme(ner, tmp_path, names, caplog):
    """--force (force=True) removes the tags anyway, with a warning: CLI in place and with -o,
    the streaming API, the pickle fallback and in memory all drop the same rows."""
    src = ner(NER)
    parent = _reload(type(tiny_bert(NER, "BertForTokenClassification")), src)
    kept = [i for i, t in enumerate(NER) if t not in names]
    want = [NER[i] for i in kept]
    res = run("remove-label", src, *names, "--force", "-o", tmp_path / "o", "--json")
    assert res.exit_code == 0, res.output
    with caplog.at_level("WARNING", logger="headsurgeon"):
        result = remove_labels_from_checkpoint(src, names, force=True)  # in place
    assert "removed anyway: --force" in caplog.text
    assert result.labels_after == want == inspect_checkpoint(src)["labels"]
    for folder in (tmp_path / "o", src):
        small = _reload(type(parent), folder)
        assert torch.equal(small.classifier.weight, parent.classifier.weight[kept]), folder
    pickled = tmp_path / "pickled"
    parent.save_pretrained(pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(parent.state_dict(), pickled / "pytorch_model.bin")
    got = remove_labels_from_checkpoint(pickled, names, allow_pickle=True, force=True)
    assert got.labels_after == want
    model = tiny_bert(NER, "BertForTokenClassification")
    with pytest.raises(LabelError, match="or pass --force"):
        remove_labels(model, names)
    assert remove_labels(model, names, force=True).labels_after == want


def test_pickle_weights_grow_by_entity_type(ner, tmp_path):
    """The in-memory fallback (pickle weights) expands the type exactly as streaming does."""
    src = ner(["O", "B-PER", "I-PER"])
    streamed = add_labels_to_checkpoint(src, ["PRODUCT"], tmp_path / "streamed")
    model = _reload(type(tiny_bert(list(BIO), "BertForTokenClassification")), src)
    shutil.rmtree(src)
    model.save_pretrained(src)
    (src / "model.safetensors").unlink()
    torch.save(model.state_dict(), src / "pytorch_model.bin")
    result = add_labels_to_checkpoint(src, ["PRODUCT"], tmp_path / "o", allow_pickle=True)
    assert result.added == streamed.added == ["B-PRODUCT", "I-PRODUCT"]
    a, b = _reload(type(model), tmp_path / "o"), _reload(type(model), tmp_path / "streamed")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
