"""The public verbs take bundles (``columns=Columns(...)``, ``tolerance=Tolerance(...)``) instead
of five column keywords and two drop keywords; the old keywords still work, with a
``DeprecationWarning`` naming the replacement; any other keyword is one clear ``OptionsError``.

Tiny offline models (tests/common.py); the refusals run before any model work.
"""

from __future__ import annotations

import warnings

import pytest

import headsurgeon
from headsurgeon import Columns, OptionsError, Tolerance
from headsurgeon.sweep import sweep
from headsurgeon.train import TrainOptions, train, train_model
from tests.common import save_text_classifier, tree_hashes
from tests.test_api import HOLDOUT, NEW, NEW_ROWS, REPLAY, grown

FAST = TrainOptions(device="cpu", max_steps=1, batch_size=8)


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    return save_text_classifier(tmp_path_factory.mktemp("shapes") / "parent")


@pytest.fixture
def renamed(tmp_path):
    """NEW_ROWS in a file whose columns are ``sentence`` and ``intent``."""
    path = tmp_path / "new.csv"
    path.write_text("sentence,intent\n" + "".join(f"{t},{n}\n" for t, n in NEW_ROWS))
    return path


def _no_warning(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        return call()


def test_train_model_old_keywords_warn_and_still_apply(parent):
    pandas = pytest.importorskip("pandas")
    model, tokenizer = grown(parent)
    frame = pandas.DataFrame({"sentence": [t for t, _ in NEW_ROWS], "intent": NEW})
    with pytest.warns(DeprecationWarning, match=r"columns=Columns\(text=..., label=...\)"):
        outcome = train_model(
            model, tokenizer, frame, text_column="sentence", label_column="intent", options=FAST
        )
    assert outcome.stats["data_examples"] == len(NEW_ROWS)
    outcome = _no_warning(
        lambda: train_model(
            model,
            tokenizer,
            frame,
            columns=Columns(text="sentence", label="intent"),
            replay=REPLAY,
            holdout=HOLDOUT,
            tolerance=Tolerance(max_drop=7.5),
            options=FAST,
        )  # fmt: skip
    )
    assert outcome.report.max_drop == 7.5
    with pytest.warns(DeprecationWarning, match=r"tolerance=Tolerance\(max_drop=...\)"):
        outcome = train_model(
            model, tokenizer, NEW_ROWS, holdout=HOLDOUT, max_drop=7.5, options=FAST
        )
    assert outcome.report.max_drop == 7.5


def test_train_model_refuses_an_unknown_keyword_before_any_model_work(parent):
    import torch

    model, tokenizer = grown(parent)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(OptionsError, match=r"train_model\(\) got unexpected keyword.*'max_dorp'"):
        train_model(model, tokenizer, NEW_ROWS, max_dorp=1.0, options=FAST)
    with pytest.raises(OptionsError, match=r"got `tolerance` and the old keyword\(s\) max_drop"):
        train_model(model, tokenizer, NEW_ROWS, tolerance=Tolerance(1.0), max_drop=2.0)
    with pytest.raises(OptionsError, match=r"`tolerance` must be a Tolerance, found float"):
        train_model(model, tokenizer, NEW_ROWS, tolerance=1.0)
    with pytest.warns(DeprecationWarning), pytest.raises(OptionsError, match="max_drop must be"):
        train_model(model, tokenizer, NEW_ROWS, max_drop=-1.0, options=FAST)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


def test_check_old_labels_old_keywords_warn_and_unknown_ones_are_refused(parent):
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = grown(parent)
    old = AutoModelForSequenceClassification.from_pretrained(parent)
    pair, child = (old, tokenizer), (model, tokenizer)
    with pytest.warns(DeprecationWarning, match=r"max_drop=, max_label_drop= is deprecated"):
        report = headsurgeon.check_old_labels(pair, child, HOLDOUT, max_drop=3.0, max_label_drop=9)
    assert (report.max_drop, report.max_label_drop) == (3.0, 9)
    report = _no_warning(
        lambda: headsurgeon.check_old_labels(pair, child, HOLDOUT, tolerance=Tolerance(3.0, 9))
    )
    assert (report.max_drop, report.max_label_drop) == (3.0, 9)
    with pytest.raises(OptionsError, match=r"check_old_labels\(\) got unexpected.*'text_col'"):
        headsurgeon.check_old_labels(pair, child, HOLDOUT, text_col="sentence")


def test_train_old_keywords_warn_and_still_apply(parent, renamed, tmp_path):
    before = tree_hashes(parent)
    with pytest.warns(DeprecationWarning, match=r"text_column=, label_column= is deprecated"):
        result = train(
            parent, renamed, tmp_path / "out", add=True, options=FAST, force=True,
            text_column="sentence", label_column="intent",
        )  # fmt: skip
    assert result.added == [NEW] and result.stats["data_examples"] == len(NEW_ROWS)
    with pytest.raises(OptionsError, match=r"train\(\) got unexpected keyword.*'labels_column'"):
        train(parent, renamed, tmp_path / "out2", labels_column="intent")
    assert not (tmp_path / "out2").exists() and tree_hashes(parent) == before


def test_sweep_old_keywords_warn_and_unknown_ones_are_refused(parent, renamed, tmp_path):
    with pytest.warns(DeprecationWarning, match=r"pass tolerance=Tolerance\(max_drop=...\)"):
        with pytest.raises(OptionsError, match="max_drop must be >= 0"):
            sweep(parent, renamed, holdout=renamed, layers="0", max_drop=-1.0)
    # sweep took its columns as one argument already: the column keywords are not its own
    for bad in ({"text_column": "sentence"}, {"max_dorp": 1.0}):
        with pytest.raises(OptionsError, match=r"sweep\(\) got unexpected keyword"):
            sweep(parent, renamed, holdout=renamed, layers="0", **bad)
    assert list(tmp_path.iterdir()) == [renamed]


@pytest.mark.parametrize(
    ("make", "unknown", "near", "known"),
    [
        (lambda: Tolerance(max_dorp=0.5), "max_dorp", "max_drop", "max_drop, max_label_drop"),
        (lambda: Columns(txt="q"), "txt", "text", "text, label, image, audio, label_sep"),
    ],
)
def test_a_bundle_refuses_an_unknown_keyword_naming_it_the_fields_and_the_close_match(
    make, unknown, near, known
):
    with pytest.raises(OptionsError) as refused:
        make()
    message = str(refused.value)
    assert f"'{unknown}'" in message and f"did you mean {near}?" in message
    assert f"it takes {known}" in message


def test_a_bundle_still_takes_its_fields_by_position_and_by_keyword():
    assert Tolerance(1.0, 2.0) == Tolerance(max_drop=1.0, max_label_drop=2.0)
    assert (Tolerance(3.0).max_drop, Tolerance(3.0).max_label_drop) == (3.0, None)
    assert Columns("q", "y") == Columns(text="q", label="y")
    assert Columns(image="path", label_sep="|").label_sep == "|"
    with pytest.raises(OptionsError, match=r"Columns\(\) got unexpected keyword argument 'zzz'; "):
        Columns(zzz="q")  # nothing close: the fields alone


def test_a_negative_tolerance_is_refused_where_it_is_written():
    with pytest.raises(OptionsError, match=r"max_drop must be >= 0 percentage points, got -1"):
        Tolerance(max_drop=-1)
    with pytest.raises(OptionsError, match=r"max_label_drop must be >= 0 .*got nan"):
        Tolerance(1.0, float("nan"))


def test_train_options_refuse_an_unknown_keyword_with_the_close_match():
    with pytest.raises(
        OptionsError, match=r"TrainOptions\(\) got .*'epochz' \(did you mean epochs\?\)"
    ):
        TrainOptions(epochz=3)
    assert TrainOptions(epochs=3.0).epochs == 3.0


def test_a_misspelled_parameter_is_pointed_to_the_parameter():
    with pytest.raises(OptionsError, match=r"'tolerence' \(did you mean tolerance\?\)"):
        train_model(None, None, NEW_ROWS, tolerence=Tolerance(1.0))
    with pytest.raises(OptionsError, match=r"'holdot' \(did you mean holdout\?\)"):
        train(".", NEW_ROWS, "out", holdot="h.csv")


def test_an_old_keyword_misspelled_is_pointed_to_its_bundle():
    with pytest.raises(OptionsError, match=r"did you mean tolerance=Tolerance\(max_drop=\.\.\.\)"):
        train_model(None, None, NEW_ROWS, max_dorp=1.0)
    with pytest.raises(OptionsError, match=r"'text_colum': did you mean columns=Columns\(text="):
        train(".", NEW_ROWS, "out", text_colum="q", foo=1)
