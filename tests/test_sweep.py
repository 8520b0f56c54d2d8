"""``headsurgeon sweep``: one run per setting (and seed) of the same data, on a tiny BERT.

The promises: one row per setting and seed with the check's drop, the new labels' recall/F1,
wall time and the top block's drift; the best trade-off marked by the documented rule; nothing
written without ``--plot``/``-o``; a valid PNG with ``--plot``; a reloadable model with ``-o``;
bad ``--layers`` as one-line errors before anything trains.
"""

from __future__ import annotations

import json
import logging
import os

import pytest
from click.testing import CliRunner

from headsurgeon.cli import main
from headsurgeon.errors import OptionsError
from headsurgeon.sweep import parse_layers, sweep
from headsurgeon.train import TrainOptions
from tests import test_train as _train
from tests.common import LABELS, tree_hashes
from tests.test_train import NEW

# the session fixtures of test_train (a tiny parent trained on alpha/beta/gamma, grown by delta)
files, parent_dir, grown_dir = _train.files, _train.parent_dir, _train.grown_dir

FAST = ["--max-steps", "2", "--batch-size", "8", "--device", "cpu"]
MEASURES = ("drop_pts", "new_recall", "new_f1", "seconds", "top_drift")


def _cli(grown, files, *args):
    argv = ["sweep", str(grown), "--data", str(files["new_csv"]), "--replay",
            str(files["old_csv"]), "--holdout", str(files["hold_csv"]), *FAST, *args]  # fmt: skip
    return CliRunner().invoke(main, argv)


def _expected_best(rows: list[dict]) -> dict:
    passing = [r for r in rows if r["passed"]]
    if passing:
        return max(passing, key=lambda r: r["new_f1"])
    return min(rows, key=lambda r: r["drop_pts"])


def test_sweep_json_has_one_row_per_setting_the_best_marked_and_writes_nothing(
    grown_dir,
    files,
    tmp_path,
    monkeypatch,
):
    monkeypatch.chdir(tmp_path)
    before, listing = tree_hashes(grown_dir), sorted(os.listdir(tmp_path))
    result = _cli(grown_dir, files, "--layers", "0,1,all", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["setting"] for r in doc["rows"]] == ["0", "1", "all"]
    assert doc["new_labels"] == [NEW] and doc["output"] is None
    assert doc["series"]["setting"] == ["0", "1", "all"]
    for measure in MEASURES:
        assert len(doc["series"][measure]) == 3
        assert doc["series"][measure] == [r[measure] for r in doc["rows"]]  # one seed: the row
    assert sum(r["best"] for r in doc["rows"]) == 1
    best = next(r for r in doc["rows"] if r["best"])
    assert best == _expected_best(doc["rows"])
    assert doc["best"] == {"setting": best["setting"], "seed": best["seed"]}
    by = {r["setting"]: r for r in doc["rows"]}
    # K=0: the blocks stay the parent's; K=1: only the top block moves; all: every block
    assert by["0"]["top_drift"] == 0 and by["0"]["drift"]["block 1"] == 0
    assert by["1"]["top_drift"] > 0 and by["1"]["drift"]["block 0"] == 0
    assert by["1"]["drift"]["embeddings"] == 0
    assert by["all"]["drift"]["block 0"] > 0 and by["all"]["drift"]["embeddings"] > 0
    assert all(r["drift"]["head"] == 0 for r in doc["rows"])  # the old rows are protected
    assert tree_hashes(grown_dir) == before
    assert sorted(os.listdir(tmp_path)) == listing  # no report, model or scratch left behind


def test_sweep_seeds_give_a_row_each_and_share_the_cached_inputs(grown_dir, files, caplog):
    def passes(seeds: int) -> tuple[list, int]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="headsurgeon"):
            report = sweep(
                grown_dir, files["new_csv"], replay=files["old_csv"], holdout=files["hold_csv"],
                layers=[1], seeds=seeds,
                options=TrainOptions(max_steps=2, batch_size=8, device="cpu"),
            )  # fmt: skip
        computed = [r for r in caplog.records if r.getMessage().startswith("computing")]
        return report.rows, len(computed)

    one, once = passes(1)
    rows, twice = passes(2)
    assert [(r.setting, r.seed) for r in rows] == [("1", 0), ("1", 1)]
    assert once > 0 and twice == once  # the second seed re-encodes nothing


def test_sweep_plot_is_a_png(grown_dir, files, tmp_path):
    png = tmp_path / "sweep.png"
    result = _cli(grown_dir, files, "--layers", "0,all", "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert "*" in result.output and "setting" in result.output
    assert f"wrote {png}" in result.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1024


def test_sweep_output_writes_the_best_model_that_reloads(parent_dir, files, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "best"
    # a wide tolerance: this test is about what -o writes, not about the tiny model's drop
    argv = ["--add", "--layers", "0,1", "-o", str(out), "--json", "--max-drop", "100"]
    result = _cli(parent_dir, files, *argv)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    best = next(r for r in doc["rows"] if r["best"])
    assert doc["output"] == str(out)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        str(out), output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert list(model.config.id2label.values()) == [*LABELS, NEW]
    event = json.loads((out / "headsurgeon.json").read_text())["events"][-1]
    assert event["op"] == "train"
    assert event["sweep"]["chosen"] == {"setting": best["setting"], "seed": best["seed"]}
    assert event["options"]["train_layers"] == int(best["setting"])
    assert (out / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    "layers, says",
    [("3", "more than the 2 encoder blocks"), ("x", "'x'"), ("", "empty"), ("1,1", "twice")],
)
def test_bad_layers_are_one_line_errors(grown_dir, files, layers, says):
    result = _cli(grown_dir, files, "--layers", layers)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --layers") and says in lines[0]


def test_parse_layers_keeps_the_order_given():
    assert [s.name for s in parse_layers("2, all,0")] == ["2", "all", "0"]
    with pytest.raises(OptionsError):
        parse_layers("-1")


def test_options_seeds_is_refused(grown_dir, files):
    with pytest.raises(OptionsError, match="seeds"):
        sweep(grown_dir, files["new_csv"], holdout=files["hold_csv"], layers="0",
              options=TrainOptions(seeds=2))  # fmt: skip


def test_output_is_refused_when_no_setting_passes(grown_dir, files, tmp_path):
    out = tmp_path / "best"
    result = _cli(grown_dir, files, "--layers", "all", "--lr", "1", "--max-drop", "0",
                  "-o", str(out))  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "NO" in result.stdout  # the table is shown
    error = result.stderr.strip().splitlines()[-1]  # after the runs' progress
    assert error.startswith("error: no setting passed") and not out.exists()


def test_sweep_options_are_train_options_with_train_defaults():
    import dataclasses

    params = {p.name: p for p in main.commands["sweep"].params}
    set_per_run = {"freeze", "train_layers", "seeds", "progress"}
    for f in dataclasses.fields(TrainOptions):
        if f.name in set_per_run:
            continue
        assert params[f.name].default == f.default, f.name
    assert "freeze" not in params and "train_layers" not in params
    assert params["seeds"].default == 1  # the sweep's own: one row per seed
