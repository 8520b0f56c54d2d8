import pytest

from headsurgeon import labels
from headsurgeon.errors import LabelError


def test_labels_of_orders_by_int_id_from_json_strings():
    assert labels.labels_of({"id2label": {"1": "b", "0": "a"}}) == ["a", "b"]


@pytest.mark.parametrize("bad", [{}, {"id2label": {"0": "a", "2": "c"}}])
def test_labels_of_rejects_missing_or_gapped_ids(bad):
    with pytest.raises(LabelError):
        labels.labels_of(bad)


@pytest.mark.parametrize(
    "names, message",
    [
        ([], "no label names"),
        (["x", "x"], "more than once: x"),
        ([" "], "empty"),
        (["a"], "already in the model: a"),
    ],
)
def test_check_new_names_refuses(names, message):
    with pytest.raises(LabelError, match=message):
        labels.check_new_names(["a", "b"], names)


def test_without_reindexes_densely_and_keeps_order():
    assert labels.without(["a", "b", "c", "d"], ["b"]) == (["a", "c", "d"], [0, 2, 3])
    with pytest.raises(LabelError, match="every label"):
        labels.without(["a"], ["a"])
    with pytest.raises(LabelError, match="unknown label"):
        labels.without(["a"], ["z"])


def test_renamed_keeps_ids_and_refuses_clash():
    assert labels.renamed(["a", "b"], "a", "z") == ["z", "b"]
    with pytest.raises(LabelError, match="already"):
        labels.renamed(["a", "b"], "a", "b")


def test_apply_to_config_dict_uses_string_ids():
    cfg = {"id2label": {"0": "a"}, "label2id": {"a": 0}}
    labels.apply_to_config(cfg, ["a", "b"])
    assert cfg["id2label"] == {"0": "a", "1": "b"} and cfg["label2id"] == {"a": 0, "b": 1}


def test_labels_module_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, headsurgeon.labels, headsurgeon.record, headsurgeon.cli; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
