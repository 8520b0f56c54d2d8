"""Defects found by a new user: label names with whitespace around them, truncated weights."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from headsurgeon import labels
from headsurgeon.cli import main
from headsurgeon.errors import CheckpointError, DataError, LabelError
from tests.common import LABELS, tree_hashes


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res, *words):
    """The CLI failed with exit 1 and one ``error:`` line naming ``words`` (no 'unexpected')."""
    err = res.stderr if hasattr(res, "stderr") else res.output
    lines = [x for x in err.splitlines() if x.strip()]
    assert res.exit_code == 1, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not lines[0].startswith("error: unexpected "), err
    for w in words:
        assert w in lines[0], err


# --- label names with whitespace / control characters around or in them -------------------


@pytest.mark.parametrize(
    "name",
    [" alpha ", "alpha ", "\talpha", "al\npha", "delta\r", "x\x00y", "\u00a0delta", "\u2028"],
)
def test_new_names_with_surrounding_whitespace_or_control_chars_are_refused(name):
    with pytest.raises(LabelError, match="label name"):
        labels.check_new_names(LABELS, [name])
    with pytest.raises(LabelError):
        labels.renamed(LABELS, "alpha", name)


def test_whitespace_around_a_known_name_gets_a_hint():
    with pytest.raises(LabelError, match="did you mean 'alpha'"):
        labels.check_known(LABELS, [" alpha "])


def test_unicode_and_inner_spaces_are_fine():
    assert labels.grown(LABELS, ["carte perdue", "カード", "a-b_c.d"])[-3:] == [
        "carte perdue",
        "カード",
        "a-b_c.d",
    ]


def test_add_label_cli_refuses_spaced_duplicate(tiny_folder, tmp_path):
    before = tree_hashes(tiny_folder)
    res = run("add-label", tiny_folder, "--name", " alpha ", "-o", tmp_path / "out")
    one_line_error(res, "' alpha '", "whitespace")
    assert not (tmp_path / "out").exists() and tree_hashes(tiny_folder) == before


def test_remove_and_rename_with_spaces(tiny_folder, tmp_path):
    res = run("remove-label", tiny_folder, " alpha", "-o", tmp_path / "a")
    one_line_error(res, "did you mean 'alpha'")
    res = run("rename-label", tiny_folder, "alpha", "beta ", "-o", tmp_path / "b")
    one_line_error(res, "'beta '", "whitespace")


def test_data_labels_with_whitespace_are_refused_naming_the_line(tmp_path):
    data = tmp_path / "new.csv"
    data.write_text("text,label\nmy card is late,card_arrival\nwhere is it, card_arrival \n")
    with pytest.raises(DataError, match=r"new.csv:3: .*' card_arrival '.*whitespace"):
        from headsurgeon.data import read_examples

        read_examples(data)


def test_train_add_refuses_spaced_data_label_before_loading(tiny_text_folder, tmp_path):
    from headsurgeon.train import train

    data = tmp_path / "new.jsonl"
    data.write_text('{"text": "card late", "label": "alpha "}\n')
    with pytest.raises(DataError, match="whitespace"):
        train(tiny_text_folder, data, tmp_path / "out", add=True)
    assert not (tmp_path / "out").exists()


# --- a truncated model.safetensors ----------------------------------------------------------


@pytest.fixture()
def truncated(tiny_text_folder, tmp_path):
    folder = tmp_path / "trunc"
    shutil.copytree(tiny_text_folder, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    return folder


def test_load_model_names_the_truncated_file(truncated):
    from headsurgeon.models import load_model

    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated") as e:
        load_model(truncated)
    assert "\n" not in str(e.value)


def test_check_and_train_and_inspect_report_the_truncated_file(truncated, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nmy card,alpha\nthe pin,beta\n")
    before = tree_hashes(truncated)
    for args in (
        ("check", truncated, truncated, "--holdout", data),
        ("train", truncated, "--data", data, "-o", tmp_path / "out"),
        ("inspect", truncated),
    ):
        one_line_error(run(*args), "model.safetensors", "truncated")
    assert tree_hashes(truncated) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", [1000, "none"])
def test_rename_label_refuses_broken_or_missing_weights(tiny_text_folder, tmp_path, size):
    folder = tmp_path / "m"
    shutil.copytree(tiny_text_folder, folder)
    weights = folder / "model.safetensors"
    if size == "none":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:size])
    before = tree_hashes(folder)
    found = "no weights" if size == "none" else "truncated"
    one_line_error(run("rename-label", folder, "alpha", "ALPHA"), "model.safetensors", found)
    one_line_error(run("rename-label", folder, "alpha", "ALPHA", "-o", tmp_path / "o"))
    assert tree_hashes(folder) == before and not (tmp_path / "o").exists()


def test_rename_label_to_itself_or_to_another_label_is_refused(tiny_folder, tmp_path):
    before = tree_hashes(tiny_folder)
    one_line_error(run("rename-label", tiny_folder, "alpha", "alpha"), "same", "nothing to do")
    res = run("rename-label", tiny_folder, "alpha", "beta")
    one_line_error(res, "beta is already a label", "remove-label beta")
    assert "use rename-label" not in res.output
    assert tree_hashes(tiny_folder) == before
    with pytest.raises(LabelError, match="same"):
        labels.renamed(LABELS, "alpha", "alpha")


def test_truncated_shard_of_an_index(tiny_text_folder, tmp_path):
    from headsurgeon.models import load_model
    from tests.common import tiny_bert

    folder = tmp_path / "sharded"
    shutil.copytree(tiny_text_folder, folder)
    (folder / "model.safetensors").unlink()
    tiny_bert().save_pretrained(folder, max_shard_size="20KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    shards[1].write_bytes(shards[1].read_bytes()[:-3])
    with pytest.raises(CheckpointError, match=shards[1].name + ".*truncated"):
        load_model(folder)


# --- found by tests/test_fuzz.py --------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content",
    [
        ("d.jsonl", '{"\\r": null}\n'),
        ("d.jsonl", "[" * 100_000 + "\n"),
        ("d.jsonl", '{"text": "hi", "label": {"a": 1}}\n'),
        ("d.csv", 'text,"la\nbel"\nhi,alpha,extra\n'),
    ],
)
def test_data_errors_stay_on_one_line(tmp_path, name, content):
    from headsurgeon.data import read_examples

    (tmp_path / name).write_text(content)
    with pytest.raises(DataError) as e:
        read_examples(tmp_path / name)
    assert "\n" not in str(e.value) and "\r" not in str(e.value)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"id2label": ["a", "b"]}, "expected an object"),
        ({"id2label": {"0": "a", "00": "b"}}, "id 0 twice"),
        ({"id2label": {"0": {"name": "a"}}}, "expected a name"),
        ({"architectures": {"a": 1}, "id2label": {"0": "a"}}, "'architectures' is a dict"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_bad_configs_are_refused_in_one_line(tmp_path, config, message):
    from headsurgeon.labels import labels_of
    from headsurgeon.models import read_config

    (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    with pytest.raises((CheckpointError, LabelError), match=message) as e:
        labels_of(read_config(tmp_path))
    assert "\n" not in str(e.value)


def test_config_transformers_cannot_read_is_one_line(tiny_folder, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["model_type"]
    (folder / "config.json").write_text(json.dumps(config))
    from headsurgeon.models import load_model

    with pytest.raises(CheckpointError, match="config.json") as e:  # what transformers needs
        load_model(folder)
    assert "\n" not in str(e.value)
    assert run("inspect", folder).exit_code == 0  # inspect reads the JSON and headers only


def test_index_that_omits_a_shards_tensor_is_refused(tmp_path):
    from headsurgeon.weights import check_weights
    from tests.common import tiny_bert

    tiny_bert().save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    index["weight_map"].pop(sorted(index["weight_map"])[0])
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="does not place there"):
        check_weights(tmp_path)


@pytest.mark.parametrize("key", [float("inf"), 1.5, True, None, (0,)])
def test_in_memory_id2label_with_odd_keys(key):
    with pytest.raises(LabelError, match="non-integer id"):
        labels.labels_of({"id2label": {key: "a"}})


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"events": ["x"]}', '{"events": [], "parent_labels": "a"}'],
    ids=["deeply-nested", "event-not-object", "labels-not-list"],
)
def test_a_broken_record_is_one_line_and_nothing_is_written(tiny_folder, tmp_path, text):
    """headsurgeon.json that is not a record: add-label refuses in one line, MODEL untouched."""
    folder = tmp_path / "m"
    shutil.copytree(tiny_folder, folder)
    (folder / "headsurgeon.json").write_text(text)
    before = tree_hashes(folder)
    one_line_error(run("add-label", folder, "--name", "delta"), "headsurgeon.json")
    assert tree_hashes(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
