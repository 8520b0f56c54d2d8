"""The CLI speaks options, not Python parameters, and the same bad value fails the same way."""

import pytest
from click.testing import CliRunner

from headsurgeon.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(tiny_text_folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("consistency") / "d.csv"
    path.write_text("text,label\nword alpha,alpha\nword beta,beta\n")
    return path


@pytest.mark.parametrize(
    "args, line",
    [
        (["train", "{m}", "--data", "{d}", "-o", "{o}", "--seeds", "0"], "--seeds must be"),
        (
            ["sweep", "{m}", "--data", "{d}", "--holdout", "{d}", "--layers", "0", "--seeds", "0"],
            "--seeds must be",
        ),
        (["check", "{m}", "{m}", "--holdout", "{d}", "--max-drop", "-1"], "--max-drop must be"),
        (["check", "{m}", "{m}", "--holdout", "{d}", "--batch-size", "0"], "--batch-size must be"),
        (
            ["train", "{m}", "--data", "{d}", "-o", "{o}", "--max-length", "0"],
            "--max-length must be",
        ),
        (
            ["train", "{m}", "--data", "{d}", "-o", "{o}", "--calibrate-fixes", "3"],
            "--calibrate-fixes must be",
        ),
    ],  # fmt: skip
    ids=["train-seeds", "sweep-seeds", "max-drop", "batch-size", "max-length", "cal-fixes"],
)
def test_a_bad_option_value_is_one_line_naming_the_option_exit_1(
    tiny_text_folder, files, tmp_path, args, line
):
    res = run(*(a.format(m=tiny_text_folder, d=files, o=tmp_path / "o") for a in args))
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith(f"error: {line}") and res.stderr.count("\n") == 1, res.stderr
    assert "_" not in res.stderr.split(" must ")[0]  # no Python parameter name
    assert not (tmp_path / "o").exists()


def test_ordinary_words_in_an_options_message_stay_words():
    from headsurgeon.cli.app import _as_options
    from headsurgeon.cli.train import train

    params = train.params
    assert _as_options("seeds > 1 and eval_every need a holdout", params) == (
        "seeds > 1 and --eval-every need a holdout"
    )
    assert _as_options("seeds must be a number >= 1", params).startswith("--seeds must")
    assert _as_options("the data holds no example of replay_per_label", params) == (
        "the data holds no example of --replay-per-label"
    )


@pytest.mark.parametrize("command", [["inspect"], ["add-label", "--name", "x"]])
def test_a_folder_without_labels_is_named_in_the_error(tmp_path, command):
    """A backbone (no id2label, no num_labels) given where a classifier is expected: the error
    names the folder's config, so a user with several folders open knows which one."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=37)  # fmt: skip
    BertModel(config).save_pretrained(tmp_path / "backbone")
    res = run(command[0], tmp_path / "backbone", *command[1:])
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith(f"error: {tmp_path / 'backbone' / 'config.json'}: "), res.stderr
    assert "no id2label" in res.stderr and res.stderr.count("\n") == 1
