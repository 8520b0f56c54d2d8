"""Tests of ``headsurgeon.train`` and ``headsurgeon train`` on a tiny BERT trained in a fixture.

Each option's effect is asserted exactly: frozen parameters bit-identical, old rows unchanged when
protected, parameter groups (LLRD, SWA), warmup schedule, early stopping, seeds, the gate.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import json
import random
import shutil
import tempfile

import pytest
import torch
from click.testing import CliRunner

from headsurgeon.cli import main
from headsurgeon.data import Example
from headsurgeon.errors import OptionsError
from headsurgeon.gate import Tolerance
from headsurgeon.train import TrainOptions, sample_replay, train_model
from tests.common import LABELS, WORDS, save_text_classifier, tree_hashes

NEW = "delta"
VOCAB = {"alpha": WORDS[:9], "beta": WORDS[9:18], "gamma": WORDS[18:27], NEW: WORDS[27:]}


def examples(label: str, n: int, seed: int) -> list[Example]:
    rng = random.Random(f"{label}-{seed}")
    return [Example(" ".join(rng.choices(VOCAB[label], k=5)), label) for _ in range(n)]


def write(path, rows: list[Example]):
    path.write_text("text,label\n" + "".join(f"{e.text},{e.label}\n" for e in rows))
    return path


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    old = [e for n in LABELS for e in examples(n, 20, 1)]
    hold = [e for n in [*LABELS, NEW] for e in examples(n, 10, 2)]
    return {
        "old": old,
        "new": examples(NEW, 8, 3),
        "hold": hold,
        "old_csv": write(d / "old.csv", old),
        "new_csv": write(d / "new.csv", examples(NEW, 8, 3)),
        "hold_csv": write(d / "hold.csv", hold),
        "bad_csv": write(d / "bad.csv", [Example("card lost", "zeta")] * 2),
    }


@pytest.fixture(scope="session")
def parent_dir(tmp_path_factory, files):
    """A tiny BERT fine-tuned on alpha/beta/gamma (so the old-label check has something to lose)."""
    from transformers import AutoTokenizer

    from headsurgeon.models import load_model

    torch.manual_seed(0)  # the tiny model's random init
    path = save_text_classifier(tmp_path_factory.mktemp("parent") / "bert")
    model, tok = load_model(path), AutoTokenizer.from_pretrained(str(path))
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = tok([e.text for e in files["old"]], padding=True, return_tensors="pt")
    gold = torch.tensor([LABELS.index(e.label) for e in files["old"]])
    model.train()
    for _ in range(40):
        opt.zero_grad()
        model(**batch, labels=gold).loss.backward()
        opt.step()
    model.eval().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def grown_dir(parent_dir, tmp_path_factory):
    """The parent with ``delta`` appended (mean init) by add-label: its record knows the old labels."""
    from headsurgeon.checkpoint import add_labels_to_checkpoint

    out = tmp_path_factory.mktemp("grown") / "bert"
    add_labels_to_checkpoint(parent_dir, [NEW], out)
    return out


def load(folder):
    from transformers import AutoTokenizer

    from headsurgeon.models import load_model

    return load_model(folder), AutoTokenizer.from_pretrained(str(folder))


def run(grown_dir, files, **opts):
    model, tok = load(grown_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opts.setdefault("batch_size", 8)
    opts.setdefault("train_layers", 0)  # the head alone on cached features unless a test says
    opts.setdefault("train_neck", False)
    opts.setdefault("max_steps", 6)
    outcome = train_model(
        model,
        tok,
        files["new"],
        replay=files["old"],
        holdout=opts.pop("holdout", None),
        options=TrainOptions(device="cpu", **opts),
        old_labels=LABELS,
    )
    after = dict(outcome.model.named_parameters())
    return before, after, outcome


def same(before, after, prefix):
    names = [n for n in before if n.startswith(prefix)]
    assert names, prefix
    return all(torch.equal(before[n], after[n]) for n in names)


# --- options -----------------------------------------------------------------------------------


def test_cli_defaults_equal_dataclass_defaults():
    params = {p.name: p for p in main.commands["train"].params}
    fields = {f.name: f for f in dataclasses.fields(TrainOptions) if f.name != "progress"}
    assert set(fields) <= set(params)
    for name, field in fields.items():
        assert params[name].default == field.default, name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"freeze": "all"}, "freeze must be one of backbone, none, got 'all'"),
        ({"llrd": 0}, "llrd must be in (0, 1], got 0"),
        ({"lr": 0}, "lr must be > 0, got 0"),
        ({"batch_size": 0}, "batch_size must be a number >= 1, got 0"),
        (
            {"reinit_top": 2, "train_layers": 1},
            "reinit_top=2 re-initialises blocks that would not train (train_layers=1); "
            "raise train_layers or use freeze='none'",
        ),
        ({"early_stopping": 2}, "early_stopping needs eval_every > 0 (evaluations to compare)"),
    ],
)
def test_options_are_validated(kwargs, message):
    with pytest.raises(OptionsError) as e:
        TrainOptions(**kwargs)
    assert str(e.value) == message


def test_replay_is_sampled_per_label_and_seeded(files):
    a = sample_replay(files["old"], LABELS, 2, seed=5)
    assert [e.label for e in a] == ["alpha"] * 2 + ["beta"] * 2 + ["gamma"] * 2
    assert a == sample_replay(files["old"], LABELS, 2, seed=5)
    assert a != sample_replay(files["old"], LABELS, 2, seed=6)
    assert sample_replay(files["old"], LABELS, 0, seed=5) == files["old"]


# --- what trains -------------------------------------------------------------------------------


def test_frozen_backbone_trains_only_new_rows_on_cached_features(grown_dir, files):
    before, after, outcome = run(grown_dir, files, lr=1e-2)
    assert outcome.stats["features_cached"] and outcome.stats["initialised"] == {NEW: "imprint"}
    assert same(before, after, "bert.")  # every backbone parameter bit-identical
    assert type(outcome.model.classifier) is torch.nn.Linear  # fused back
    w, b = after["classifier.weight"], after["classifier.bias"]
    assert torch.equal(w[:3], before["classifier.weight"][:3])
    assert torch.equal(b[:3], before["classifier.bias"][:3])
    assert not torch.equal(w[3], before["classifier.weight"][3])


def test_no_protect_old_rows_trains_them(grown_dir, files):
    before, after, _ = run(grown_dir, files, lr=1e-2, protect_old_rows=False)
    assert same(before, after, "bert.")
    assert not torch.equal(after["classifier.weight"][:3], before["classifier.weight"][:3])


def test_train_layers_trains_top_blocks_only(grown_dir, files):
    before, after, outcome = run(grown_dir, files, lr=1e-3, train_layers=1, max_steps=2)
    assert same(before, after, "bert.embeddings.")
    assert same(before, after, "bert.encoder.layer.0.")
    assert not same(before, after, "bert.encoder.layer.1.")
    assert same(before, after, "bert.pooler.")  # the neck, off here: frozen
    assert torch.equal(after["classifier.weight"][:3], before["classifier.weight"][:3])
    assert outcome.stats["block_inputs_cached"] and outcome.stats["neck_parameters"] == []


@pytest.mark.parametrize("train_layers", [0, 1])
def test_train_neck_trains_the_pooler_with_the_head(grown_dir, files, train_layers):
    before, after, outcome = run(
        grown_dir, files, lr=1e-2, train_layers=train_layers, train_neck=True, max_steps=2
    )
    assert outcome.stats["neck_parameters"] == [
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
    ]
    assert not same(before, after, "bert.pooler.")
    assert same(before, after, "bert.encoder.layer.0.")
    assert same(before, after, "bert.encoder.layer.1.") == (train_layers == 0)
    assert same(before, after, "bert.embeddings.")
    assert torch.equal(after["classifier.weight"][:3], before["classifier.weight"][:3])
    assert torch.equal(after["classifier.bias"][:3], before["classifier.bias"][:3])
    # only the neck (and blocks above train_layers) ran, on the blocks' cached outputs
    assert outcome.stats["block_inputs_cached"] and not outcome.stats["features_cached"]


def test_reinit_top_reinitialises_those_blocks(grown_dir, files):
    before, after, _ = run(grown_dir, files, lr=1e-9, train_layers=1, reinit_top=1, max_steps=1)
    assert same(before, after, "bert.encoder.layer.0.")
    q = "bert.encoder.layer.1.attention.self.query.weight"
    assert (after[q] - before[q]).abs().max() > 1e-2  # lr 1e-9 cannot do that: the re-init did


def test_freeze_none_with_llrd_distill_and_swa_runs(grown_dir, files):
    before, after, outcome = run(
        grown_dir, files, freeze="none", llrd=0.5, distill=1.0, swa=True, lr=1e-3, max_steps=4
    )
    assert not same(before, after, "bert.embeddings.")
    assert torch.equal(after["classifier.weight"][:3], before["classifier.weight"][:3])
    assert outcome.stats["seeds"][0]["swa_updates"] == 3  # steps 2, 3, 4 (from half of 4)


# --- optimizer, schedule, callbacks ------------------------------------------------------------


def _scratch() -> str:
    path = tempfile.mkdtemp(prefix="headsurgeon-test-")
    atexit.register(shutil.rmtree, path, True)
    return path


def make_trainer(model, options, callbacks=(), rows=None):
    """A HeadsurgeonTrainer as train_model builds it (depths from the model when it has a head).
    Trainer makes its output folder: a fresh temp folder, deleted at exit."""
    from headsurgeon.locate import locate_head
    from headsurgeon.tasks.text import make_collator
    from headsurgeon.train.schedule import layer_depths, training_args
    from headsurgeon.train.trainer import HeadsurgeonTrainer, Rows

    depths = layer_depths(model, locate_head(model).paths) if hasattr(model, "config") else {}
    return HeadsurgeonTrainer(
        model=model,
        args=training_args(options.for_task("sequence-classification"), 0, _scratch()),
        train_dataset=Rows(rows or []),
        data_collator=make_collator(None, 8),
        callbacks=list(callbacks),
        old_ids=[0, 1, 2],
        distill=options.distill,
        temperature=options.temperature,
        depths=depths,
        llrd=options.llrd,
    )


def test_llrd_param_groups_follow_depth(grown_dir):
    model, _ = load(grown_dir)
    trainer = make_trainer(model, TrainOptions(freeze="none", llrd=0.5, lr=1e-3, weight_decay=0.01))
    groups = trainer.create_optimizer().param_groups
    ids = {id(p): g for g in groups for p in g["params"]}
    expect = {
        "classifier.weight": 0,
        "bert.pooler.dense.weight": 0,
        "bert.encoder.layer.1.output.dense.weight": 1,
        "bert.encoder.layer.0.output.dense.weight": 2,
        "bert.embeddings.word_embeddings.weight": 3,
    }
    for name, depth in expect.items():
        group = ids[id(model.get_parameter(name))]
        assert group["depth"] == depth and group["lr"] == pytest.approx(1e-3 * 0.5**depth), name
        assert group["weight_decay"] == 0.01
    assert ids[id(model.get_parameter("classifier.bias"))]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


@pytest.mark.parametrize(("warmup", "ramp"), [(0.5, 5), (3, 3)])
def test_warmup_ratio_or_steps(grown_dir, warmup, ramp):
    model, _ = load(grown_dir)
    trainer = make_trainer(model, TrainOptions(freeze="none", lr=1e-3, warmup=warmup))
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert lrs[0] == 0.0
    assert lrs[ramp] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:ramp], lrs[1 : ramp + 1], strict=True))


def test_swa_averages_with_swalr():
    from headsurgeon.train.schedule import SWA
    from headsurgeon.train.trainer import FeatureModel

    head = torch.nn.Linear(4, 3)
    model = FeatureModel(head)
    rows = [{"features": torch.randn(4), "label": i % 3, "weight": 1.0} for i in range(16)]
    swa = SWA(start=2, lr_factor=0.5)
    options = TrainOptions(lr=0.1, max_steps=6, batch_size=4)
    trainer = make_trainer(model, options, [swa], rows)
    trainer.train()
    assert swa.updates == 5 and int(swa.averaged.n_averaged) == 5
    assert all(g["swa_lr"] == pytest.approx(0.05) for g in trainer.optimizer.param_groups)
    assert torch.equal(head.weight, swa.averaged.module.head.weight)


def test_distillation_term(grown_dir):
    from headsurgeon.train.trainer import FeatureModel

    head = torch.nn.Linear(4, 4)
    x = torch.randn(5, 4)
    with torch.no_grad():
        child_old = head(x)[:, :3]
    inputs = lambda parent: {  # noqa: E731
        "features": x,
        "labels": torch.tensor([3] * 5),
        "weight": torch.ones(5),
        "parent_logits": parent,
    }
    trainer = make_trainer(load(grown_dir)[0], TrainOptions(distill=2.0))
    plain = torch.nn.functional.cross_entropy(head(x), torch.tensor([3] * 5))
    model = FeatureModel(head)
    assert trainer.compute_loss(model, inputs(child_old)).item() == pytest.approx(plain.item())
    assert trainer.compute_loss(model, inputs(torch.randn(5, 3))).item() > plain.item()


def test_early_stopping_stops(grown_dir, files):
    _, _, outcome = run(
        grown_dir,
        files,
        holdout=files["hold"],
        lr=1e-9,
        eval_every=1,
        early_stopping=2,
        max_steps=20,
    )
    run0 = outcome.stats["seeds"][0]
    assert run0["stopped_early"] and run0["steps"] == 3  # best at step 1, then 2 without gain


def test_seeds_keep_the_best(grown_dir, files):
    _, _, outcome = run(grown_dir, files, holdout=files["hold"], seeds=3, lr=3e-2, max_steps=10)
    runs = outcome.stats["seeds"]
    assert [r["seed"] for r in runs] == [0, 1, 2]
    kept = [r for r in runs if r["kept"]]
    assert kept and all(
        r["score"] == max(r["score"] for r in runs if not r["pruned"]) for r in kept
    )
    for r in runs[1:]:  # a pruned seed stopped at its trial step (30% of 10)
        assert not r["pruned"] or r["steps"] == 3


# --- CLI and the gate --------------------------------------------------------------------------


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_trains_writes_atomically_and_records(grown_dir, files, tmp_path):
    hashes = tree_hashes(grown_dir)
    out = tmp_path / "tuned"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"],
        "--holdout", files["hold_csv"], "-o", out, "--max-steps", 30, "--batch-size", 8,
        "--lr", 2e-3, "--device", "cpu", "--max-drop", 10, "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["check"]["passed"] and doc["output"] == str(out)
    assert tree_hashes(grown_dir) == hashes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tuned"]
    from transformers import AutoModelForSequenceClassification

    model, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    parent, _ = load(grown_dir)
    assert torch.equal(model.classifier.weight[:3], parent.classifier.weight[:3])
    assert (out / "tokenizer.json").is_file()
    record = json.loads((out / "headsurgeon.json").read_text())
    event = record["events"][-1]
    assert event["op"] == "train" and event["check"]["passed"] is True
    assert event["trained_labels"] == [NEW] and event["options"]["lr"] == 2e-3
    assert event["new_labels"] == [NEW] and event["data_examples"] == 8
    noise = event["check"]["drop_uncertainty"]  # the drop's paired interval, as in --json
    assert noise == doc["check"]["drop_uncertainty"]
    assert noise["n"] == doc["check"]["n_old_examples"]


BAD = (
    "--init",
    "normal",
    "--freeze",
    "none",
    "--no-protect-old-rows",
    "--lr",
    2e-2,
    "--epochs",
    10,
)


def test_gate_stops_a_bad_run_with_exit_3_and_no_output(grown_dir, files, tmp_path):
    out = tmp_path / "bad"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--holdout", files["hold_csv"], "-o", out,
        "--device", "cpu", "--batch-size", 4, *BAD,
    )  # fmt: skip
    assert res.exit_code == 3, res.output
    assert "not written" in res.output and "drop" in res.output.lower()
    assert list(tmp_path.iterdir()) == []


def test_gate_per_label_tolerance_stops_what_the_aggregate_allows(grown_dir, files, tmp_path):
    out = tmp_path / "bad"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--holdout", files["hold_csv"], "-o", out,
        "--device", "cpu", "--batch-size", 4, "--max-drop", 100, "--max-label-drop", 0, *BAD,
    )  # fmt: skip
    assert res.exit_code == 3, res.output
    assert "old label(s) dropped more than the 0 pt allowed per label" in res.output
    assert f"{out} not written" in res.output
    assert list(tmp_path.iterdir()) == []


def test_gate_force_writes_and_records_the_failure(grown_dir, files, tmp_path):
    out = tmp_path / "forced"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--holdout", files["hold_csv"], "-o", out,
        "--device", "cpu", "--batch-size", 4, "--force", "--json", *BAD,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["check"]["passed"] is False
    event = json.loads((out / "headsurgeon.json").read_text())["events"][-1]
    assert event["op"] == "train" and event["check"]["passed"] is False
    assert event["check"]["drop_pts"] > 0.5


def test_unknown_data_label_is_an_error(grown_dir, files, tmp_path):
    res = cli("train", grown_dir, "--data", files["bad_csv"], "-o", tmp_path / "x")
    assert res.exit_code == 1
    assert res.output.strip() == (
        f"error: {files['bad_csv']} has label(s) the model does not have: 'zeta' (2 examples); "
        "add them first (add-label or --add) or fix the data"
    )
    assert not (tmp_path / "x").exists()


def test_add_flag_adds_and_imprints_missing_labels(parent_dir, files, tmp_path):
    out = tmp_path / "added"
    res = cli(
        "train", parent_dir, "--data", files["new_csv"], "--add", "--replay", files["old_csv"],
        "-o", out, "--max-steps", 3, "--device", "cpu", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["added"] == [NEW] and doc["initialised"] == {NEW: "imprint"}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "alpha", "1": "beta", "2": "gamma", "3": NEW}
    ops = [e["op"] for e in json.loads((out / "headsurgeon.json").read_text())["events"]]
    assert ops == ["add-label", "train"]


def test_output_must_be_new(grown_dir, files):
    res = cli("train", grown_dir, "--data", files["new_csv"], "-o", grown_dir)
    assert res.exit_code == 1 and "is the input model" in res.output


def tiny_mpnet(names):
    """MPNet: its encoder reads ``layer_outputs[0]`` (blocks return tuples)."""
    import transformers

    from tests.common import label_kwargs

    config = transformers.MPNetConfig(
        vocab_size=99, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=80, pad_token_id=0, **label_kwargs(names),
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.MPNetForSequenceClassification(config).eval()


def test_llrd_depths_follow_execution_order():
    """MPNet registers ``encoder.relative_attention_bias`` after its blocks but uses it before
    them: with the probe it decays like the embeddings, not at the head's LR."""
    from headsurgeon.train.blocks import probe_model
    from headsurgeon.train.schedule import layer_depths
    from tests.common import tiny_tokenizer

    model, tok = tiny_mpnet(LABELS), tiny_tokenizer()
    paths = ["classifier.out_proj"]
    probe = probe_model(model, tok, paths)
    bias = "mpnet.encoder.relative_attention_bias.weight"
    assert layer_depths(model, paths)[bias] == 0  # registration order: after the blocks
    depths = layer_depths(model, paths, probe)
    assert depths[bias] == depths["mpnet.embeddings.word_embeddings.weight"] == 4
    assert depths["mpnet.encoder.layer.0.attention.attn.q.weight"] == 3
    assert depths["classifier.dense.weight"] == depths["classifier.out_proj.weight"] == 0


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "mpnet"])
def test_top_blocks_on_cached_inputs_match_the_full_model(arch, files):
    from headsurgeon.tasks.text import make_collator
    from headsurgeon.train.blocks import blocks_return_tuples
    from headsurgeon.train.features import TopBlocks, block_inputs
    from headsurgeon.train.freezing import encoder_blocks
    from tests.common import tiny_bert, tiny_distilbert, tiny_roberta, tiny_tokenizer

    build = {"bert": tiny_bert, "roberta": tiny_roberta, "distilbert": tiny_distilbert}
    model, tok = build.get(arch, tiny_mpnet)(LABELS), tiny_tokenizer()
    texts = [e.text for e in files["hold"][:8]] + ["card", "where is my money card lost pin"]
    batch = tok(texts, padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    with torch.no_grad():
        full = model(**batch).logits
    _, blocks = encoder_blocks(model)
    kind = type(blocks[0])
    assert blocks_return_tuples(model, tok, blocks) == (arch == "mpnet")
    for index in range(1, len(blocks) + 1):  # the top blocks; at len(blocks) the neck alone
        hidden = block_inputs(model, tok, texts, blocks, index, batch_size=3)
        rows = [
            {"text": t, "hidden": h, "label": 0, "weight": 1.0}
            for t, h in zip(texts, hidden, strict=True)
        ]
        inputs = make_collator(tok, 128)(rows)
        inputs.pop("labels"), inputs.pop("weight")
        inputs.pop("token_type_ids", None)
        top = TopBlocks(model, blocks, index, blocks_return_tuples(model, tok, blocks))
        with torch.no_grad():
            cached = top(**inputs).logits
        top.restore()
        assert torch.allclose(cached, full, atol=1e-5), index
        assert all(type(b) is kind for b in blocks)  # real blocks back


#: calibrate on the training replay (no held-out slice, no precision bound): the budget tests
#: then count flips on the same examples they feed
ON_REPLAY = {"calibrate_per_label": 0, "calibrate_precision": None}


def test_calibrate_label_cap_bounds_each_old_labels_flips(grown_dir, files, parent_dir):
    parent, tok = load(parent_dir)
    batch = tok([e.text for e in files["old"]], padding=True, return_tensors="pt")
    gold = torch.tensor([LABELS.index(e.label) for e in files["old"]])
    with torch.no_grad():
        right = parent(**batch).logits.argmax(-1) == gold
    flips = {}
    for cap in (None, 10.0, 0.0):
        _, _, out = run(
            grown_dir, files, lr=1e-2, calibrate=50.0, calibrate_label_cap=cap, **ON_REPLAY
        )
        with torch.no_grad():
            child = out.model.eval()(**batch).logits.argmax(-1)
        flips[cap] = [int(((child == 3) & right & (gold == c)).sum()) for c in range(3)]
        for c in range(3):
            limit = int(int((right & (gold == c)).sum()) * (100 if cap is None else cap) / 100)
            assert flips[cap][c] <= limit, (cap, c)
    assert sum(flips[None]) > sum(flips[10.0]) >= sum(flips[0.0]) == 0
    with pytest.raises(OptionsError, match="calibrate_label_cap must be a number >= 0"):
        TrainOptions(calibrate_label_cap=-1)


def test_calibrate_shifts_the_new_bias_to_the_replay_budget(grown_dir, files, parent_dir):
    _, _, outcome = run(grown_dir, files, lr=1e-2, calibrate=0.0, **ON_REPLAY)
    assert set(outcome.stats["calibrated_bias_shifts"]) == {NEW}
    parent, tok = load(parent_dir)
    batch = tok([e.text for e in files["old"]], padding=True, return_tensors="pt")
    gold = torch.tensor([LABELS.index(e.label) for e in files["old"]])
    with torch.no_grad():
        right = parent(**batch).logits.argmax(-1) == gold
        child = outcome.model(**batch).logits.argmax(-1)
    assert right.sum() > 0 and not (child[right] == 3).any()  # budget 0: none flips to delta
    _, _, top = run(
        grown_dir, files, lr=1e-2, calibrate=0.0, train_layers=1, max_steps=2, **ON_REPLAY
    )
    assert set(top.stats["calibrated_bias_shifts"]) == {NEW}  # top blocks on cached inputs too
    with torch.no_grad():
        child = top.model(**batch).logits.argmax(-1)
    assert not (child[right] == 3).any()
    for opts in ({}, {"train_layers": 1, "max_steps": 2}, {"train_neck": True}):
        _, _, loose = run(
            grown_dir,
            files,
            lr=1e-2,
            calibrate=50.0,
            calibrate_label_cap=None,
            **opts,
            **ON_REPLAY,
        )
        loose.model.eval()
        with torch.no_grad():
            child = loose.model(**batch).logits.argmax(-1)
        flips = int((child[right] == 3).sum())
        assert abs(flips - int(right.sum()) // 2) <= 1, opts  # budget: half flip


def test_calibrate_moves_new_labels_by_one_shift_to_the_budget(parent_dir, files):
    """Several new labels: one common shift puts the budget's share of the replay on the new
    labels as a group; the per-label cap then lowers only the labels that exceed it."""
    from headsurgeon.surgery import add_labels

    new = ["delta", "epsilon"]
    words = {"delta": VOCAB[NEW], "epsilon": WORDS[:3] + WORDS[27:29]}
    data = [
        Example(" ".join(random.Random(f"{n}-{i}").choices(words[n], k=5)), n)
        for n in new
        for i in range(8)
    ]
    parent, tok = load(parent_dir)
    batch = tok([e.text for e in files["old"]], padding=True, return_tensors="pt")
    gold = torch.tensor([LABELS.index(e.label) for e in files["old"]])
    with torch.no_grad():
        right = parent(**batch).logits.argmax(-1) == gold
    for cap in (None, 10.0):
        model, tok = load(parent_dir)
        add_labels(model, new, init="mean")
        options = TrainOptions(
            device="cpu", batch_size=8, train_layers=0, train_neck=False, max_steps=6, lr=1e-2,
            calibrate=30.0, calibrate_label_cap=cap, **ON_REPLAY,
        )  # fmt: skip
        out = train_model(model, tok, data, replay=files["old"], options=options, old_labels=LABELS)
        shifts = out.stats["calibrated_bias_shifts"]
        with torch.no_grad():
            child = out.model.eval()(**batch).logits.argmax(-1)
        to_new = child[right] >= len(LABELS)
        if cap is None:
            assert set(shifts) == set(new) and shifts["delta"] == shifts["epsilon"]
            assert int(to_new.sum()) == int(0.30 * int(right.sum()))
        else:
            for j, c in itertools.product((3, 4), range(3)):
                limit = int(int((right & (gold == c)).sum()) * cap / 100)
                assert int(((child == j) & right & (gold == c)).sum()) <= limit, (j, c)
            assert shifts["delta"] != shifts["epsilon"]  # only the one that exceeded is lowered


NECKS = {
    "bert": ["bert.pooler.dense.weight", "bert.pooler.dense.bias"],
    "roberta": ["classifier.dense.weight", "classifier.dense.bias"],
    "distilbert": ["pre_classifier.weight", "pre_classifier.bias"],
    "mpnet": ["classifier.dense.weight", "classifier.dense.bias"],
    "llama": ["model.norm.weight"],  # a decoder: the head scores every position
    "gpt2": ["transformer.ln_f.weight", "transformer.ln_f.bias"],
}
HEADS = {
    "roberta": "classifier.out_proj",
    "mpnet": "classifier.out_proj",
    "llama": "score",
    "gpt2": "score",
}


def tiny_gpt2(names=LABELS):
    import transformers

    from tests.common import label_kwargs

    config = transformers.GPT2Config(
        vocab_size=99, n_embd=16, n_layer=3, n_head=2, n_positions=64, pad_token_id=0,
        **label_kwargs(names),
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2ForSequenceClassification(config).eval()


@pytest.mark.parametrize("arch", list(NECKS))
@pytest.mark.parametrize("train_layers", [0, 1])
def test_default_training_across_architectures(arch, train_layers, files):
    """The default path (neck + top block on cached inputs, protected rows, calibration, check)
    on six head layouts (two decoders whose head scores every position): what must not move is bit-identical, the neck trains, and the check's
    figures (computed on the cached path) are those of the returned model."""
    from headsurgeon.checks import predict_logits
    from headsurgeon.surgery import add_labels
    from headsurgeon.train.freezing import encoder_blocks
    from tests.common import tiny_bert, tiny_distilbert, tiny_llama, tiny_roberta, tiny_tokenizer

    build = {
        "bert": tiny_bert,
        "roberta": tiny_roberta,
        "distilbert": tiny_distilbert,
        "mpnet": tiny_mpnet,
        "llama": tiny_llama,
        "gpt2": tiny_gpt2,
    }
    torch.manual_seed(0)
    model, tok = build[arch](LABELS), tiny_tokenizer()
    add_labels(model, [NEW], init="mean")
    head = HEADS.get(arch, "classifier")
    has_bias = model.get_submodule(head).bias is not None
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    texts = [e.text for e in files["hold"]]
    parent_logits = predict_logits(model, tok, texts, batch_size=4)[:, : len(LABELS)]
    blocks_path, blocks = encoder_blocks(model)
    outcome = train_model(
        model, tok, files["new"], replay=files["old"], holdout=files["hold"],
        options=TrainOptions(device="cpu", batch_size=8, max_steps=3, lr=1e-2,
                             train_layers=train_layers),
        old_labels=LABELS,
    )  # fmt: skip
    after = dict(outcome.model.named_parameters())
    assert outcome.stats["neck_parameters"] == NECKS[arch]
    assert outcome.stats["block_inputs_cached"]
    assert bool(outcome.stats["calibrated_bias_shifts"]) == has_bias  # no bias: nothing to shift
    assert outcome.stats["initialised"] == {NEW: "imprint"}  # features of decoders too
    for name, value in before.items():
        top = name.startswith(f"{blocks_path}.{len(blocks) - 1}.") and train_layers
        moved = name in NECKS[arch] or top or name.startswith(head + ".")
        assert torch.equal(after[name], value) != moved or name.startswith(head + "."), name
    assert torch.equal(after[f"{head}.weight"][:3], before[f"{head}.weight"][:3])
    if f"{head}.bias" in after:
        assert torch.equal(after[f"{head}.bias"][:3], before[f"{head}.bias"][:3])
    logits = predict_logits(outcome.model, tok, texts, batch_size=4)
    old = [i for i, e in enumerate(files["hold"]) if e.label in LABELS]
    names = [*LABELS, NEW]
    right = sum(names[logits[i].argmax()] == files["hold"][i].label for i in old)
    assert outcome.report.accuracy_after == right / len(old)
    right = sum(names[parent_logits[i].argmax()] == files["hold"][i].label for i in old)
    assert outcome.report.accuracy_before == right / len(old)  # the parent from the features


def test_calibrate_says_when_it_cannot_run(grown_dir, files, caplog):
    """Not calibrated (the whole model trains, so no cached inputs): a warning says so, and
    no shift is reported."""
    with caplog.at_level("WARNING", logger="headsurgeon"):
        _, _, out = run(grown_dir, files, freeze="none", max_steps=1, calibrate=2.0)
    assert out.stats["calibrated_bias_shifts"] == {}
    assert "--calibrate needs the backbone frozen" in caplog.text


def test_left_padding_tokenizer_takes_the_cached_path(files):
    """A decoder whose tokenizer pads on the left (as Llama's) still trains on cached block
    inputs (training pads on the right, on a copy of the tokenizer); the user's tokenizer is
    unchanged and the check's figures are the returned model's with that tokenizer."""
    from headsurgeon.checks import predict_logits
    from headsurgeon.surgery import add_labels
    from tests.common import tiny_llama, tiny_tokenizer

    torch.manual_seed(0)
    model, tok = tiny_llama(LABELS), tiny_tokenizer()
    tok.padding_side = "left"
    add_labels(model, [NEW], init="mean")
    outcome = train_model(
        model, tok, files["new"], replay=files["old"], holdout=files["hold"],
        options=TrainOptions(device="cpu", batch_size=8, max_steps=3, lr=1e-2),
        old_labels=LABELS,
    )  # fmt: skip
    assert outcome.stats["block_inputs_cached"] and tok.padding_side == "left"
    logits = predict_logits(outcome.model, tok, [e.text for e in files["hold"]], batch_size=4)
    old = [i for i, e in enumerate(files["hold"]) if e.label in LABELS]
    names = [*LABELS, NEW]
    right = sum(names[logits[i].argmax()] == files["hold"][i].label for i in old)
    assert outcome.report.accuracy_after == right / len(old)


def test_default_path_takes_features_from_the_block_pass(grown_dir, files, monkeypatch):
    """With the top-blocks path the head's inputs come from the pass that caches the block
    inputs (no second pass through the bottom blocks), and equal a full pass's."""
    import headsurgeon.train.features as M

    model, tok = load(grown_dir)
    rows = files["new"] + files["old"] + files["hold"]
    texts = list(dict.fromkeys(e.text for e in rows))
    full = M.head_inputs(model, tok, texts, "classifier")

    def no_second_pass(*_a, **_k):
        raise AssertionError("a full feature pass ran")

    monkeypatch.setattr(M, "head_inputs", no_second_pass)
    features, hidden = {}, {}
    options = TrainOptions(device="cpu", batch_size=8, max_steps=2)
    train_model(
        model, tok, files["new"], replay=files["old"], holdout=files["hold"], options=options,
        old_labels=LABELS, feature_cache=features, hidden_cache=hidden,
    )  # fmt: skip
    assert set(features) == set(hidden) == set(texts)
    assert torch.allclose(torch.stack([features[t] for t in texts]), full, atol=1e-5)


def test_incremental_benchmark_methods_table_and_plot(tmp_path, monkeypatch, capsys):
    """The benchmark's method list is valid options, --list prints it, the plot is drawn."""
    import importlib.util
    import os
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "incremental.py"
    spec = importlib.util.spec_from_file_location("incremental_bench", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "incremental_bench", bench)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_VERBOSITY"):  # the script sets them by default
        monkeypatch.setenv(var, os.environ.get(var, "0" if var == "HF_HUB_OFFLINE" else "warning"))
    spec.loader.exec_module(bench)
    for _name, (_, spec_) in bench.METHODS.items():
        if "recipe" not in spec_:
            TrainOptions(**spec_)  # a typo in a method raises here
    assert bench.METHODS["defaults"][1] == {}  # the defaults row is TrainOptions() itself
    previous = TrainOptions(**bench.METHODS["previous"][1])
    assert (previous.calibrate, previous.calibrate_per_label, previous.replay_per_label) == (
        3.0,
        0,
        0,
    )
    assert set(bench.DEFAULT_METHODS) <= set(bench.METHODS)
    bench.main(["--list"])
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(bench.METHODS)
    run = {"before": 0.881, "after": 0.88, "drop": 0.1, "recall": 0.9, "precision": 0.8,
           "passed": True, "oracle": 0.95, "time": 1.0}  # fmt: skip
    row = bench.aggregate([run, dict(run, drop=0.7, passed=False, recall=0.8)])
    assert row["drop"] == pytest.approx(0.4)
    assert (row["worst_drop"], row["worst_recall"], row["passed"]) == (0.7, 0.8, 1)
    rows = [(d, s, m, dict(row, drop=x)) for d in ("banking", "stackoverflow")
            for s in ("S1", "S2") for m, x in (("defaults", -1), ("b", 40))]  # fmt: skip
    assert "1/2" in bench.table(rows) and "stackoverflow" in bench.table(rows)
    # what a drop is made of: parent right -> new label / other old label; parent wrong -> right
    from types import SimpleNamespace

    report = SimpleNamespace(child_labels=["a", "b", "n"], old_labels=["a", "b"])
    holdout = [Example(str(i), g) for i, g in enumerate(["a", "a", "b", "b", "n"])]
    parent = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1], [1, 0]])
    child = torch.tensor([[0.0, 0, 1], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])
    parts = bench.flips((parent, child), holdout, report)
    assert parts == {"to_new": 25.0, "to_old": 25.0, "fixed": 25.0}
    # the oracle: n found with no old example lost, but it also takes the "b" the parent missed
    child = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]])
    assert bench.oracle((parent, child), holdout, report, ["n"]) == 1.0
    assert bench.oracle((parent, child), holdout, report, ["n"], precision=0.8) == 0.0
    pytest.importorskip("matplotlib")
    bench.plot(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_train_option_takes_a_value_of_its_field_type():
    """Options whose default is the task's (None) still parse their values (a bug: NoneType)."""
    params = {p.name: p for p in main.commands["train"].params}
    for f in dataclasses.fields(TrainOptions):
        if f.name == "progress" or isinstance(f.default, bool):
            continue
        value = {"int": "3", "float": "0.5"}.get(str(f.type).split("|")[0].strip())
        if value is not None:
            assert params[f.name].type.convert(value, None, None) == float(value), f.name


def test_new_repeats_repeat_new_rows_at_a_share_of_the_weight():
    """``new_repeats=N``: each new example is N rows per epoch at new_weight/N (the same total
    weight); old examples stay one row at weight 1."""
    from types import SimpleNamespace

    from headsurgeon.tasks.text import TextTask

    plan = SimpleNamespace(
        new_labels=[NEW], labels=[*LABELS, NEW], features_only=True, parent=None,
        options=TrainOptions(new_repeats=4, new_weight=10.0, distill=0.0),
    )  # fmt: skip
    train = [*examples(NEW, 2, 0), *examples(LABELS[0], 3, 0)]
    rows = TextTask().rows(plan, train, torch.zeros(len(train), 4), None)
    new = [r for r in rows if r["label"] == len(LABELS)]
    assert len(new) == 8 and {r["weight"] for r in new} == {2.5}
    assert len(rows) == 11 and sum(r["weight"] for r in rows) == 2 * 10.0 + 3


def test_several_new_labels_train_more_epochs_by_default():
    """Text classifiers: 4 epochs for one new label, SEVERAL_NEW_EPOCHS for more; token
    classifiers keep 4; an explicit --epochs is kept."""
    from headsurgeon.tasks.text import SEVERAL_NEW_EPOCHS

    seq, tok = "sequence-classification", "token-classification"
    assert TrainOptions().for_task(seq, None, 50, 1).epochs == 4.0
    assert TrainOptions().for_task(seq, None, 50, 2).epochs == SEVERAL_NEW_EPOCHS == 8.0
    assert TrainOptions().for_task(tok, None, 9, 4).epochs == 4.0
    assert TrainOptions(epochs=2.0).for_task(seq, None, 50, 10).epochs == 2.0


def test_rows_of_block_inputs_are_batched_by_length_for_text_only(grown_dir):
    """Rows of cached block inputs: batches of similar length (a LengthGroupedSampler seeded by
    the run's seed, the same permutation every time); token rows and feature rows: Trainer's
    random sampler."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from headsurgeon.tasks.text import TextTask
    from headsurgeon.tasks.token.task import TokenTask
    from headsurgeon.train.trainer import Rows

    lengths = [1 + i % 40 for i in range(400)]
    rows = [{"hidden": torch.zeros(n, 4), "label": 0, "weight": 1.0} for n in lengths]
    assert Rows(rows, TextTask.batches_by_length).lengths == lengths
    assert Rows(rows, TokenTask.batches_by_length).lengths is None
    assert Rows([{"features": torch.zeros(4), "label": 0, "weight": 1.0}]).lengths is None
    model = load(grown_dir)[0]
    options = TrainOptions(batch_size=8)
    sampler = make_trainer(model, options, rows=rows)._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    order = list(sampler)
    assert sorted(order) == list(range(400))
    assert order == list(make_trainer(model, options, rows=rows)._get_train_sampler())

    def spread(order):  # padding per batch: longest minus shortest, summed
        return sum(
            max(lengths[i] for i in order[k : k + 8]) - min(lengths[i] for i in order[k : k + 8])
            for k in range(0, 400, 8)
        )

    shuffled = torch.randperm(400, generator=torch.Generator().manual_seed(0)).tolist()
    assert spread(order) < spread(shuffled) / 3


def test_one_seed_is_the_kept_seed():
    """One seed without --eval-every: nothing is scored during training, and the seed whose
    weights the model has is recorded as kept (stats and telemetry agree)."""
    from headsurgeon.surgery import add_labels
    from tests.common import tiny_bert, tiny_tokenizer

    torch.manual_seed(0)
    model, tok = tiny_bert(LABELS), tiny_tokenizer()
    add_labels(model, [NEW], init="mean")
    holdout = [e for n in [*LABELS, NEW] for e in examples(n, 3, 7)]
    outcome = train_model(
        model, tok, examples(NEW, 4, 3), replay=[e for n in LABELS for e in examples(n, 9, 1)],
        holdout=holdout, options=TrainOptions(device="cpu", batch_size=8, max_steps=2),
        old_labels=LABELS, tolerance=Tolerance(100.0),
    )  # fmt: skip
    (run,) = outcome.stats["seeds"]
    assert run["kept"] is True and "score" not in run
    assert [s["kept"] for s in outcome.telemetry["seeds"]] == [True]
