"""The Python API a retraining pipeline relies on (issue 20): plain data in (tuples, dicts, a
DataFrame, a ``datasets.Dataset``), the old labels protected by default, the outcome saved
with its full record, transformers hooks, messages that name Python parameters, types.

Every test runs on a tiny BERT built offline (tests/common.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import random
from pathlib import Path

import pytest
import torch

import headsurgeon
from headsurgeon.data import Columns, Example
from headsurgeon.errors import (
    CheckpointError,
    DataError,
    GateFailedError,
    LabelError,
    OptionsError,
)
from headsurgeon.gate import Tolerance
from headsurgeon.train import TrainOptions, train, train_model
from tests.common import LABELS, WORDS, save_text_classifier, tree_hashes

NEW = "delta"
VOCAB = {"alpha": WORDS[:9], "beta": WORDS[9:18], "gamma": WORDS[18:27], NEW: WORDS[27:]}
FAST = TrainOptions(device="cpu", max_steps=3, batch_size=8)


def rows(label: str, n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(f"{label}-{seed}")
    return [(" ".join(rng.choices(VOCAB[label], k=5)), label) for _ in range(n)]


NEW_ROWS = rows(NEW, 8, 1)
REPLAY = [r for n in LABELS for r in rows(n, 20, 2)]
HOLDOUT = [r for n in [*LABELS, NEW] for r in rows(n, 10, 3)]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    return save_text_classifier(tmp_path_factory.mktemp("api") / "parent")


def grown(folder):
    """The parent loaded as a pipeline loads it, grown in memory by one label."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    headsurgeon.add_labels(model, [NEW])
    return model, AutoTokenizer.from_pretrained(folder)


# --- (2) safe defaults ------------------------------------------------------------------------


def test_an_old_label_example_in_data_stays_protected_and_gated(parent, caplog):
    """One example of an old label among the new data used to make it "new": its row was
    re-imprinted and the gate dropped it. It stays old, protected and gated, with a warning."""
    model, tokenizer = grown(parent)
    rows_before = model.classifier.weight.detach().clone()
    data = [Example(t, n) for t, n in NEW_ROWS] + [Example(t, n) for t, n in rows("alpha", 2, 4)]
    replay = [Example(t, n) for t, n in REPLAY]
    holdout = [Example(t, n) for t, n in HOLDOUT]
    with caplog.at_level(logging.WARNING, logger="headsurgeon"):
        outcome = train_model(model, tokenizer, data, replay=replay, holdout=holdout, options=FAST)
    assert outcome.stats["old_labels"] == 3 and outcome.stats["new_labels"] == [NEW]
    assert torch.equal(model.classifier.weight[:3], rows_before[:3])  # alpha's row too
    assert outcome.report.old_labels == LABELS  # gated on every old label
    assert "alpha (2)" in caplog.text and "used as replay" in caplog.text
    train_event = outcome.record["events"][-1]
    assert train_event["op"] == "train" and train_event["trained_labels"] == [NEW]


def test_old_labels_default_to_the_records_parent_labels(parent, tmp_path):
    """A model loaded from a folder whose record names its parent's labels protects them,
    whatever the data holds."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    grown_dir = tmp_path / "grown"
    headsurgeon.add_labels_to_checkpoint(parent, [NEW], output=grown_dir)
    model = AutoModelForSequenceClassification.from_pretrained(grown_dir)
    data = [Example(t, n) for t, n in NEW_ROWS + rows("beta", 3, 5)]
    outcome = train_model(model, AutoTokenizer.from_pretrained(parent), data, options=FAST)
    assert outcome.stats["new_labels"] == [NEW] and outcome.stats["old_labels"] == 3
    with pytest.raises(LabelError, match="`old_labels` names label"):
        train_model(model, None, data, old_labels=["alpha", "omega"], options=FAST)


# --- (1) data in any usual form, (3) saved with its record ------------------------------------


def _as(form: str, pairs: list[tuple[str, str]]):
    if form == "tuples":
        return list(pairs)
    if form == "dicts":
        return [{"text": t, "label": n, "id": i} for i, (t, n) in enumerate(pairs)]
    if form == "dataframe":
        pandas = pytest.importorskip("pandas")
        return pandas.DataFrame(pairs, columns=["text", "label"])
    datasets = pytest.importorskip("datasets")
    names = [*LABELS, NEW]
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}
    )
    ids = {"text": [t for t, _ in pairs], "label": [names.index(n) for _, n in pairs]}
    return datasets.Dataset.from_dict(ids, features=features)  # label ids, read as names


@pytest.mark.parametrize("form", ["tuples", "dicts", "dataframe", "dataset"])
def test_the_pipeline_trains_gates_and_saves_from_each_form(parent, tmp_path, form):
    """The nightly pipeline, written once per form: train, gate, save; the folder reloads
    with its tokenizer, and its card lists every step (add-label, train, the check)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from headsurgeon.card import build_card

    model, tokenizer = grown(parent)
    data, replay, holdout = (_as(form, r) for r in (NEW_ROWS, REPLAY, HOLDOUT))
    outcome = train_model(model, tokenizer, data, replay=replay, holdout=holdout, options=FAST)
    assert outcome.stats["data_examples"] == len(NEW_ROWS)
    assert outcome.report is not None and outcome.passed == outcome.report.passed
    assert json.loads(json.dumps(outcome.to_dict()))["check"]["old_labels"] == LABELS
    out = outcome.save(tmp_path / "out", force=True)
    assert {"config.json", "model.safetensors", "tokenizer.json", "training.json"} <= {
        p.name for p in out.iterdir()
    }
    record = json.loads((out / "headsurgeon.json").read_text())
    assert record["parent"] == "parent" and record["parent_labels"] == LABELS
    assert [e["op"] for e in record["events"]] == ["add-label", "train"]
    train_event = record["events"][1]
    assert train_event["data"]["examples"] == len(NEW_ROWS)
    assert train_event["data"]["name"].endswith("in memory") and "check" in train_event
    reloaded, info = AutoModelForSequenceClassification.from_pretrained(
        out, output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert headsurgeon.labels_of(reloaded.config) == [*LABELS, NEW]
    assert AutoTokenizer.from_pretrained(out)("card lost")["input_ids"]
    card = build_card(out)  # what push uploads
    assert "**add-label**: added `delta`" in card and "**train**" in card
    assert "old-label check" in card


def test_a_bad_row_is_one_data_error_naming_it_before_any_model_work(parent):
    model, tokenizer = grown(parent)
    weights = copy.deepcopy(model.state_dict())
    bad = [
        ([*NEW_ROWS, ("", NEW)], "data row 9: empty or non-text"),
        ([*NEW_ROWS[:2], (3, NEW, "x")], "data row 3: expected (text, label)"),
        ([{"sentence": "card lost", "label": NEW}], "data row 1: no column 'text'"),
        ([("card lost", "omega")], "label(s) the model does not have: 'omega'"),
        (7, "data: expected examples"),
    ]
    for data, message in bad:
        with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
            train_model(model, tokenizer, data, options=FAST)
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"sentence": ["card lost"], "intent": [NEW]})
    with pytest.raises(DataError, match="holdout row 1: no column 'text'"):
        train_model(model, tokenizer, NEW_ROWS, holdout=frame, options=FAST)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    outcome = train_model(  # the columns chosen as the CLI's --text-column/--label-column
        model, tokenizer, frame, columns=Columns(text="sentence", label="intent"), options=FAST
    )
    assert outcome.stats["data_examples"] == 1


def test_save_refuses_a_failed_gate_and_writes_nothing(parent, tmp_path):
    model, tokenizer = grown(parent)
    outcome = train_model(model, tokenizer, NEW_ROWS, replay=REPLAY, holdout=HOLDOUT, options=FAST)
    outcome.report = dataclasses.replace(outcome.report, drop_pts=5.0, max_drop=0.5, passed=False)
    with pytest.raises(GateFailedError, match=r"not written; try one of: .*`force=True`") as e:
        outcome.save(tmp_path / "out")
    assert e.value.report is outcome.report and list(tmp_path.iterdir()) == []
    out = outcome.save(tmp_path / "out", force=True)
    assert "check" in json.loads((out / "headsurgeon.json").read_text())["events"][-1]


def test_saving_into_a_folder_that_is_not_empty_says_so_in_python_words(parent, tmp_path):
    """``outcome.save`` and ``train``'s output are refused with one message that reads right
    from Python (the CLI's ``-o`` only named as such); nothing written, nothing changed."""
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    before = tree_hashes(tmp_path)
    model, tokenizer = grown(parent)
    outcome = train_model(model, tokenizer, NEW_ROWS, options=FAST)
    for force in (False, True):  # the gate's force does not write into it either
        with pytest.raises(CheckpointError) as refused:
            outcome.save(existing, force=force)
        message = str(refused.value)
        assert f"save(folder): {existing} already exists and is not empty" in message
        assert "-o " not in message and "force=True does not write into it" in message
        assert tree_hashes(tmp_path) == before and sorted(tmp_path.iterdir()) == [existing]
    with pytest.raises(CheckpointError) as refused:  # the folder verb mirrors the command line
        train(parent, NEW_ROWS, existing, add=False, options=FAST)
    message = str(refused.value)
    assert f"output folder {existing} already exists and is not empty" in message
    assert "choose another output folder (-o on the command line)" in message
    assert tree_hashes(tmp_path) == before and sorted(tmp_path.iterdir()) == [existing]


def test_folder_train_takes_data_held_in_memory(parent, tmp_path, capfd, monkeypatch):
    """``train(folder, ...)`` with a DataFrame, tuples and a file: ``add`` grows the model by
    the data's new label; the record names the in-memory data by form and hash. With progress
    off (the default) transformers' loading and writing bars stay off too."""
    from transformers.utils import logging as hf_logging

    pandas = pytest.importorskip("pandas")
    holdout = tmp_path / "holdout.csv"
    holdout.write_text("text,label\n" + "".join(f"{t},{n}\n" for t, n in HOLDOUT))
    before = tree_hashes(parent)
    hf_logging.enable_progress_bar()  # as in a user's session (the tests' env turns them off)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    try:
        result = train(
            parent, pandas.DataFrame(NEW_ROWS, columns=["text", "label"]), tmp_path / "out",
            replay=REPLAY, holdout=holdout, add=True, options=FAST, force=True,
        )  # fmt: skip
    finally:
        hf_logging.disable_progress_bar()
    bars = capfd.readouterr().err
    assert "Loading weights" not in bars and "Writing model shards" not in bars
    assert result.added == [NEW] and tree_hashes(parent) == before
    events = json.loads((result.output / "headsurgeon.json").read_text())["events"]
    assert [e["op"] for e in events] == ["add-label", "train"]
    assert events[1]["data"]["name"] == "DataFrame in memory"
    assert events[1]["replay"]["examples"] == len(REPLAY)
    assert events[1]["holdout"]["name"] == "holdout.csv"


def test_check_old_labels_takes_a_dataframe_holdout(parent):
    pandas = pytest.importorskip("pandas")
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = grown(parent)
    old = AutoModelForSequenceClassification.from_pretrained(parent)
    frame = pandas.DataFrame(HOLDOUT, columns=["text", "label"])
    report = headsurgeon.check_old_labels((old, tokenizer), (model, tokenizer), frame)
    assert report.n_old_examples == 30 and report.new_labels == [NEW]


# --- (5) hooks ------------------------------------------------------------------------------


def test_callbacks_and_trainer_args_reach_trainer(parent):
    from transformers import TrainerCallback

    class Seen(TrainerCallback):
        def __init__(self):
            self.steps, self.logs = 0, []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

    model, tokenizer = grown(parent)
    seen = Seen()
    train_model(
        model, tokenizer, NEW_ROWS, replay=REPLAY, options=FAST, callbacks=[seen],
        trainer_args={"logging_steps": 1, "report_to": []},
    )  # fmt: skip
    assert seen.steps == FAST.max_steps
    assert sum("loss" in log for log in seen.logs) == FAST.max_steps  # logged every step


def test_what_headsurgeon_controls_is_refused_before_any_model_work(parent):
    model, tokenizer = grown(parent)
    weights = copy.deepcopy(model.state_dict())
    changed = Tolerance()
    changed.max_drop = -1  # set after it was built (Tolerance(-1) itself is refused)
    refused = [
        (
            {"trainer_args": {"learning_rate": 1.0}},
            "'learning_rate', which headsurgeon controls: use `options.lr`",
        ),
        ({"trainer_args": {"num_train_epochs": 2}}, "use `options.epochs`"),
        ({"trainer_args": {"no_such_field": 1}}, "not a field of transformers' TrainingArguments"),
        ({"callbacks": [object()]}, "`callbacks` must hold transformers TrainerCallback"),
        ({"tolerance": changed}, "max_drop must be >= 0"),
        ({"options": {"lr": 1}}, "`options` must be a TrainOptions"),
        ({"options": TrainOptions(seeds=2)}, r"need a holdout to score on \(`holdout`\)"),
    ]
    for kwargs, message in refused:
        with pytest.raises(OptionsError, match=message):
            train_model(model, tokenizer, NEW_ROWS, **{"options": FAST, **kwargs})
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


# --- (6) messages ----------------------------------------------------------------------------


def test_advice_names_python_parameters_and_the_cli_spells_its_options():
    from headsurgeon.cli.app import _named_options
    from headsurgeon.cli.train import train as train_command
    from headsurgeon.train.folders import gate_advice

    advice = gate_advice(TrainOptions(freeze="none", lr=0.05), replayed=False)
    assert advice == (
        "add replay (`replay`), keep the backbone frozen (`freeze='backbone'`), "
        "lower the learning rate (`lr` below 0.05)"
    )
    assert "--" not in advice
    assert _named_options(advice + "; or pass `force=True`", train_command.params) == (
        "add replay (--replay), keep the backbone frozen (--freeze backbone), "
        "lower the learning rate (--lr below 0.05); or pass --force"
    )
    assert _named_options("`calibrate=None` or `train_layers=0`", train_command.params) == (
        "--no-calibrate or --train-layers 0"
    )


# --- (4) types -------------------------------------------------------------------------------


def test_the_package_is_typed_and_exports_what_the_docs_name():
    import headsurgeon.train.outcome as outcome_module

    root = Path(headsurgeon.__file__).parent
    assert (root / "py.typed").is_file()
    for name in ("remove_labels", "rename_label", "Example", "GateReport", "TrainOptions",
                 "train_model", "TrainOutcome", "TrainResult", "LabelledText", "Sentence"):  # fmt: skip
        assert name in headsurgeon.__all__ and getattr(headsurgeon, name) is not None
    hints = outcome_module.TrainOutcome.__annotations__
    assert hints["report"] == "GateReport | None"


def test_type_checkers_see_every_lazy_export():
    """The lazy names of ``headsurgeon`` are imported under ``TYPE_CHECKING`` too (else a
    type checker types them ``Any``), and every one resolves."""
    import ast

    tree = ast.parse(Path(headsurgeon.__file__).read_text(encoding="utf-8"))
    block = next(
        n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.dump(n.test)
    )
    seen = {
        a.asname or a.name
        for n in ast.walk(block)
        if isinstance(n, ast.ImportFrom)
        for a in n.names
    }
    assert seen == set(headsurgeon.__all__) - {"__version__"}
    assert all(getattr(headsurgeon, name) is not None for name in headsurgeon.__all__)


# --- (7) examples/, and mypy over them ------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def trained_parent(tmp_path_factory):
    """A tiny BERT fine-tuned on alpha/beta/gamma (a gate has something to keep)."""
    from transformers import AutoTokenizer

    from headsurgeon.models import load_model

    torch.manual_seed(0)
    path = save_text_classifier(tmp_path_factory.mktemp("api") / "trained")
    model, tok = load_model(path), AutoTokenizer.from_pretrained(str(path))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = tok([t for t, _ in REPLAY], padding=True, return_tensors="pt")
    gold = torch.tensor([LABELS.index(n) for _, n in REPLAY])
    model.train()
    for _ in range(40):
        opt.zero_grad()
        model(**batch, labels=gold).loss.backward()
        opt.step()
    model.eval().save_pretrained(path)
    return path


def _example(name: str):
    """The example script as a module (run in this process: no second import of torch)."""
    import runpy

    return runpy.run_path(str(EXAMPLES / name), run_name=f"example_{name[:-3]}")


@pytest.mark.parametrize("form", ["tuples", "dataframe", "dataset"])
def test_nightly_pipeline_example(trained_parent, tmp_path, form, capsys):
    pytest.importorskip({"tuples": "csv", "dataframe": "pandas", "dataset": "datasets"}[form])
    data = tmp_path / "data"
    data.mkdir()
    two_new = NEW_ROWS + [(t, "epsilon") for t, _ in rows(NEW, 6, 9)]
    for name, pairs in (("new", two_new), ("replay", REPLAY), ("holdout", HOLDOUT)):
        (data / f"{name}.csv").write_text(
            "text,label\n" + "".join(f"{t},{n}\n" for t, n in pairs), encoding="utf-8"
        )
    main = _example("nightly_pipeline.py")["main"]
    args = [str(trained_parent), str(tmp_path / "out"), "--data", str(data), "--form", form]
    code = main([*args, "--max-steps", "4", "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "2 new label(s) delta, epsilon" in out.out and "headsurgeon push" in out.out
    record = json.loads((tmp_path / "out" / "headsurgeon.json").read_text())
    assert [e["op"] for e in record["events"]] == ["add-label", "train"]
    assert record["events"][1]["check"]["passed"] is True


def test_ner_pipeline_example(tmp_path, capsys):
    from tests.common import tiny_bert, tiny_tokenizer
    from tests.test_token_train import OLD, conll, sentences

    parent = tmp_path / "ner-parent"
    tiny_bert(OLD, "BertForTokenClassification").save_pretrained(parent)
    tiny_tokenizer().save_pretrained(parent)
    data = tmp_path / "ner"
    data.mkdir()
    conll(data / "new.conll", sentences(8, ["ORG", "PER"], 1, untagged=("PER",)))
    conll(data / "replay.conll", sentences(12, ["PER", "LOC"], 2))
    conll(data / "holdout.conll", sentences(12, ["PER", "LOC", "ORG"], 3))
    main = _example("ner_pipeline.py")["main"]
    args = [str(parent), str(tmp_path / "out"), "--data", str(data), "--max-steps", "3"]
    code = main([*args, "--device", "cpu", "--max-drop", "100"])  # a random tiny tagger
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "old-type check PASSED" in out.out and "new entity type(s) ORG" in out.out
    labels = headsurgeon.labels_of(json.loads((tmp_path / "out" / "config.json").read_text()))
    assert labels == [*OLD, "B-ORG", "I-ORG"]
    events = json.loads((tmp_path / "out" / "headsurgeon.json").read_text())["events"]
    assert [e["op"] for e in events] == ["add-label", "train"]
    assert events[1]["data"]["name"] == "list in memory"
    assert events[1]["holdout"]["name"] == "holdout.conll"


def test_mypy_strict_passes_on_the_examples(tmp_path):
    """The public API as a user's type checker sees it (``[tool.mypy]`` in pyproject.toml:
    strict over examples/)."""
    pytest.importorskip("mypy")
    import subprocess
    import sys

    root = EXAMPLES.parent
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "--strict",
         "examples/nightly_pipeline.py", "examples/ner_pipeline.py"],
        cwd=root, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cli_reads_parquet_and_a_save_to_disk_folder(parent, tmp_path):
    pandas = pytest.importorskip("pandas")
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("pyarrow")
    from click.testing import CliRunner

    from headsurgeon.cli import main

    data = tmp_path / "data"
    data.mkdir()
    pandas.DataFrame(NEW_ROWS, columns=["text", "label"]).to_parquet(data / "new.parquet")
    replay = {"text": [t for t, _ in REPLAY], "label": [n for _, n in REPLAY]}
    datasets.Dataset.from_dict(replay).save_to_disk(str(data / "replay"))
    pandas.DataFrame(HOLDOUT, columns=["text", "label"]).to_parquet(data / "holdout.parquet")
    before = tree_hashes(data)
    args = ["train", str(parent), "--data", str(data / "new.parquet"), "--replay",
            str(data / "replay"), "--holdout", str(data / "holdout.parquet"), "--add", "-o",
            str(tmp_path / "out"), "--max-steps", "3", "--device", "cpu", "--force", "-q"]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    event = json.loads((tmp_path / "out" / "headsurgeon.json").read_text())["events"][-1]
    assert event["data"]["name"] == "new.parquet" and event["data"]["examples"] == len(NEW_ROWS)
    assert event["replay"] == {"name": "replay", "examples": len(REPLAY)}
    res = CliRunner().invoke(main, ["check", str(parent), str(tmp_path / "out"), "--holdout",
                                    str(data / "holdout.parquet"), "--json"])  # fmt: skip
    assert res.exit_code in (0, 3) and json.loads(res.stdout)["n_old_examples"] == 30
    assert tree_hashes(data) == before
