"""Image classifiers through train, check, sweep and push: the README pipeline on a tiny ViT.

The promises: an image classifier grown by ``add-label`` trains on a folder of images (or a CSV
of paths) with every text path (cached features, top blocks on cached inputs, the whole model),
its old rows stay bit-identical, it reloads with no missing or unexpected keys, the accuracy
gate judges it (exit 3 on a regression, nothing written), ``sweep`` compares settings, and bad
input is one ``error:`` line with nothing written. The images are PNGs written by the tests;
the parent is a tiny ViT trained in a fixture so that the gate has something to lose.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from headsurgeon.cli import main
from headsurgeon.data import Columns
from headsurgeon.gate import Tolerance
from tests.common import tree_hashes
from tests.test_hub import hub, hub_server  # noqa: F401  (the test Hub's fixtures)

PIL = pytest.importorskip("PIL", reason='Pillow is needed: pip install -e ".[dev]"')
from PIL import Image  # noqa: E402

OLD = ["cat", "dog", "owl"]
NEW = "fox"
SIZE = 16
#: each label is a colour (images are it plus noise)
COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "owl": (40, 40, 200), "fox": (220, 200, 30)}
NO_KEYS = ("missing_keys", "unexpected_keys", "mismatched_keys")


def pngs(root, label: str, n: int, seed: int) -> list:
    """``n`` noisy PNGs of ``label``'s colour in ``root/label/`` (the imagefolder layout)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pixels = np.array(COLOURS[label], dtype=float) + rng.normal(0, 40, (SIZE, SIZE, 3))
        path = root / label / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(path)
        out.append(path)
    return out


def tiny_vit(labels=OLD):
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=SIZE, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=24, id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )  # fmt: skip
    return ViTForImageClassification(config)


def processor():
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": SIZE, "width": SIZE})


def fit(model, examples, steps: int = 30):
    """Train ``model`` on ``examples`` (all in one batch) so it knows its labels."""
    from headsurgeon.tasks.image import pixel_batches

    batch = next(pixel_batches(examples, processor(), batch_size=len(examples),
                               label2id=model.config.label2id))  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Folders old/ (12 per old label), new/ (6 of fox), test/ (8 per label), a trained parent
    ViT with its processor, and the parent grown by ``add-label``."""
    from headsurgeon.tasks.image import read_image_examples

    d = tmp_path_factory.mktemp("images")
    for i, label in enumerate(OLD):
        pngs(d / "old", label, 12, i)
    for i, label in enumerate([*OLD, NEW]):
        pngs(d / "test", label, 8, 10 + i)
    pngs(d / "new", NEW, 6, 20)
    torch.manual_seed(0)
    fit(tiny_vit(), read_image_examples(d / "old")).save_pretrained(d / "vit")
    processor().save_pretrained(d / "vit")
    assert run("add-label", d / "vit", "--name", NEW, "-o", d / "grown").exit_code == 0
    return d


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(res, *words):
    assert res.exit_code == 1, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def loaded(folder):
    from transformers import AutoModelForImageClassification

    model, info = AutoModelForImageClassification.from_pretrained(folder, output_loading_info=True)
    assert not any(info[k] for k in NO_KEYS), info
    return model


@pytest.mark.usefixtures("hub")
def test_the_readme_pipeline_on_an_image_model(images, tmp_path):
    """inspect → add-label (fixture) → train → check → push, on folders of PNGs."""
    from huggingface_hub import hf_hub_download

    d, out = images, tmp_path / "tuned"
    before = tree_hashes(d)
    res = run("inspect", d / "vit")
    assert "task:         image classification" in res.output
    assert "commands:     inspect, add-label, remove-label, rename-label, diff, push, train, " \
        "check, sweep" in res.output  # fmt: skip
    res = run("train", d / "grown", "--data", d / "new", "--replay", d / "old", "--holdout",
              d / "test", "--device", "cpu", "--max-drop", "100", "-o", out, "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["task"] == "image-classification" and doc["new_labels"] == [NEW]
    assert doc["block_inputs_cached"] and doc["data_examples"] == 6
    check = doc["check"]
    assert check["old_labels"] == OLD and check["n_old_examples"] == 24
    assert check["drop_uncertainty"]["n"] == 24  # the accuracy gate, with its interval
    tuned, parent = loaded(out), loaded(d / "vit")
    assert torch.equal(tuned.classifier.weight[:3], parent.classifier.weight)
    assert torch.equal(tuned.classifier.bias[:3], parent.classifier.bias)
    assert tuned.config.id2label == dict(enumerate([*OLD, NEW]))
    assert (out / "preprocessor_config.json").read_bytes() == (
        d / "vit" / "preprocessor_config.json"
    ).read_bytes()
    event = json.loads((out / "headsurgeon.json").read_text())["events"][-1]
    assert event["op"] == "train" and event["trained_labels"] == [NEW]
    res = run("check", d / "vit", out, "--holdout", d / "test", "--max-drop", "100")
    assert res.exit_code == 0 and "old-label check PASSED" in res.output, res.output
    assert "on 24 holdout examples of 3 old labels" in res.output
    res = run("check", d / "vit", d / "grown", "--holdout", d / "test", "--no-record")
    assert "scoring holdout (parent and child)" in res.output  # heads differ only: one pass
    assert "accuracy on 24 holdout examples of 3 old labels 100.00% -> 100.00%" in res.output
    res = run("push", out, "--repo", "me/vit-fox")
    assert res.exit_code == 0, res.output
    card = open(hf_hub_download("me/vit-fox", "README.md", cache_dir=tmp_path / "c")).read()
    assert "pipeline_tag: image-classification" in card
    assert hf_hub_download("me/vit-fox", "preprocessor_config.json", cache_dir=tmp_path / "c")
    assert tree_hashes(d) == before  # inputs unchanged


BAD = ("--init", "normal", "--freeze", "none", "--no-protect-old-rows", "--lr", "2e-2",
       "--epochs", "10", "--batch-size", "4")  # fmt: skip


def test_a_regression_is_refused_with_exit_3_and_nothing_written(images, tmp_path):
    d, out = images, tmp_path / "bad"
    before = tree_hashes(d)
    res = run("train", d / "grown", "--data", d / "new", "--holdout", d / "test", "-o", out,
              "--device", "cpu", *BAD)  # fmt: skip
    assert res.exit_code == 3, res.output
    assert "old-label check FAILED" in res.output and f"{out} not written" in res.output
    assert list(tmp_path.iterdir()) == [] and tree_hashes(d) == before
    res = run("train", d / "grown", "--data", d / "new", "--holdout", d / "test", "-o", out,
              "--device", "cpu", "--force", "--json", *BAD)  # fmt: skip
    assert res.exit_code == 0 and json.loads(res.stdout)["check"]["passed"] is False
    res = run("check", d / "vit", out, "--holdout", d / "test", "--no-record")
    assert res.exit_code == 3 and "old-label check FAILED" in res.output, res.output


def test_sweep_layers_0_and_1_writes_the_best(images, tmp_path):
    d, out = images, tmp_path / "best"
    before = tree_hashes(d)
    res = run("sweep", d / "grown", "--data", d / "new", "--replay", d / "old", "--holdout",
              d / "test", "--layers", "0,1", "--max-steps", "3", "--max-drop", "100",
              "--device", "cpu", "-o", out, "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["setting"] for r in doc["rows"]] == ["0", "1"] and doc["new_labels"] == [NEW]
    assert doc["rows"][0]["drift"]["block 1"] == 0.0  # 0: the blocks stay as they were
    assert doc["rows"][1]["drift"]["block 1"] > 0.0  # 1: the top block trained
    best = loaded(out)
    assert torch.equal(best.classifier.weight[:3], loaded(d / "vit").classifier.weight)
    assert tree_hashes(d) == before


def test_a_csv_of_paths_trains_through_the_python_api(images, tmp_path):
    """``train`` reads a CSV of image paths (relative to it, in --image-column); ``train_model``
    and ``check_old_labels`` take an in-memory model with its processor."""
    from headsurgeon import check_old_labels
    from headsurgeon.models import load_model
    from headsurgeon.tasks.image import read_image_examples
    from headsurgeon.train import TrainOptions, train, train_model

    d = images
    rows = [f"pics/{p.name},{NEW}" for p in sorted((d / "new" / NEW).iterdir())]
    (tmp_path / "pics").mkdir()
    for p in sorted((d / "new" / NEW).iterdir()):
        (tmp_path / "pics" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "new.csv").write_text("picture,label\n" + "\n".join(rows) + "\n")
    options = TrainOptions(device="cpu", max_steps=2, train_layers=0, train_neck=False)
    result = train(d / "grown", tmp_path / "new.csv", tmp_path / "out", replay=d / "old",
                   options=options, columns=Columns(image="picture"))  # fmt: skip
    assert result.stats["features_cached"] and result.stats["data_examples"] == 6
    model = load_model(d / "grown")
    outcome = train_model(
        model, processor(), read_image_examples(tmp_path / "new.csv", image_column="picture"),
        replay=read_image_examples(d / "old"), holdout=read_image_examples(d / "test"),
        options=TrainOptions(device="cpu", max_steps=2), tolerance=Tolerance(100),
    )  # fmt: skip
    assert outcome.report.n_old_examples == 24 and outcome.stats["block_inputs_cached"]
    report = check_old_labels(
        d / "vit", (outcome.model, processor()), d / "test", tolerance=Tolerance(100)
    )
    assert report.accuracy_before == outcome.report.accuracy_before


def test_top_blocks_on_cached_inputs_match_the_full_model(images):
    """The cached block inputs with zero images standing in give the whole model's logits, for
    ViT's blocks and a CNN's stages (ResNet: [channels, height, width] per image)."""
    from transformers import ResNetConfig, ResNetForImageClassification

    from headsurgeon.tasks.image import read_image_examples
    from headsurgeon.tasks.image.task import ImageTask
    from headsurgeon.train.blocks import blocks_return_tuples, encoder_blocks
    from headsurgeon.train.features import TopBlocks, block_inputs

    resnet = ResNetForImageClassification(
        ResNetConfig(
            embedding_size=8,
            hidden_sizes=[8, 16, 16],
            depths=[1, 1, 1],
            layer_type="basic",
            num_labels=3,
        )  # fmt: skip
    ).eval()
    examples = read_image_examples(images / "test")[:10]
    for model in (tiny_vit().eval(), resnet):
        task = ImageTask()
        view, keys = task.tokenizer(processor()), [task.key(e) for e in examples]
        with torch.no_grad():
            full = model(**view(keys)).logits
        _, blocks = encoder_blocks(model, ["classifier"])
        as_tuple = blocks_return_tuples(model, view, blocks)
        for index in range(1, len(blocks) + 1):
            hidden = block_inputs(model, view, keys, blocks, index, batch_size=3)
            rows = [
                {"text": k, "hidden": h, "label": 0, "weight": 1.0}
                for k, h in zip(keys, hidden, strict=True)
            ]
            inputs = task.collator(view, 0)(rows)
            inputs.pop("labels"), inputs.pop("weight")
            assert not inputs["pixel_values"].any()  # zeros stand in for the images
            top = TopBlocks(model, blocks, index, as_tuple)
            with torch.no_grad():
                cached = top(**inputs).logits
            top.restore()
            assert torch.allclose(cached, full, atol=1e-5), (type(model).__name__, index)


def test_a_cnn_trains_its_top_stage_on_cached_inputs(images, tmp_path):
    """A ResNet (stages, not a list of transformer blocks) trains through train_model."""
    from transformers import ResNetConfig, ResNetForImageClassification

    from headsurgeon.surgery import add_labels
    from headsurgeon.tasks.image import read_image_examples
    from headsurgeon.train import TrainOptions, train_model

    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                          layer_type="basic", id2label=dict(enumerate(OLD)),
                          label2id={n: i for i, n in enumerate(OLD)})  # fmt: skip
    model = ResNetForImageClassification(config).eval()
    add_labels(model, [NEW])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    outcome = train_model(
        model, processor(), read_image_examples(images / "new"),
        replay=read_image_examples(images / "old"), holdout=read_image_examples(images / "test"),
        options=TrainOptions(device="cpu", max_steps=2), old_labels=OLD, tolerance=Tolerance(100),
    )  # fmt: skip
    assert outcome.stats["block_inputs_cached"]
    after = dict(outcome.model.named_parameters())
    assert torch.equal(after["classifier.1.weight"][:3], before["classifier.1.weight"][:3])
    lower = [n for n in before if n.startswith(("resnet.embedder", "resnet.encoder.stages.0"))]
    assert lower and all(torch.equal(before[n], after[n]) for n in lower)
    assert not torch.equal(
        before["resnet.encoder.stages.1.layers.0.layer.0.convolution.weight"],
        after["resnet.encoder.stages.1.layers.0.layer.0.convolution.weight"],
    )


def test_a_cnn_keeps_its_frozen_batch_norms_and_predicts_what_its_check_measured(images):
    """A ResNet trained on cached stage inputs (its stem runs on zero images meanwhile): the
    frozen batch norms' statistics stay bit-identical, so the model returned predicts the
    holdout exactly as the check measured it."""
    from transformers import ResNetConfig, ResNetForImageClassification

    from headsurgeon.surgery import add_labels
    from headsurgeon.tasks.image import pixel_batches, read_image_examples
    from headsurgeon.train import TrainOptions, train_model

    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                          layer_type="basic", id2label=dict(enumerate(OLD)),
                          label2id={n: i for i, n in enumerate(OLD)})  # fmt: skip
    model = ResNetForImageClassification(config).eval()
    add_labels(model, [NEW])
    frozen = {n: b.clone() for n, b in model.named_buffers() if ".stages.1." not in n}
    holdout = read_image_examples(images / "test")
    outcome = train_model(
        model, processor(), read_image_examples(images / "new"),
        replay=read_image_examples(images / "old"), holdout=holdout,
        options=TrainOptions(device="cpu", max_steps=4), old_labels=OLD, tolerance=Tolerance(100),
    )  # fmt: skip
    assert outcome.stats["block_inputs_cached"] and any("embedder" in n for n in frozen)
    after = dict(outcome.model.named_buffers())
    assert all(torch.equal(b, after[n]) for n, b in frozen.items())
    batch = next(pixel_batches(holdout, processor(), batch_size=len(holdout)))
    with torch.no_grad():
        logits = outcome.model.eval()(pixel_values=batch["pixel_values"]).logits
    assert torch.allclose(logits, outcome.holdout_logits[1], atol=1e-5)


def _vision(name: str):
    """A tiny image classifier of the family ``name`` (cat/dog/owl) for SIZE-pixel images."""
    import transformers as t

    labels = {"id2label": dict(enumerate(OLD)), "label2id": {n: i for i, n in enumerate(OLD)}}
    vit = {"image_size": SIZE, "patch_size": 4, "hidden_size": 16, "num_hidden_layers": 2,
           "num_attention_heads": 2, "intermediate_size": 24}  # fmt: skip
    configs = {
        "deit": (t.DeiTForImageClassification, t.DeiTConfig(**vit, **labels)),
        "beit": (t.BeitForImageClassification,
                 t.BeitConfig(**vit, use_relative_position_bias=True, **labels)),
        "swin": (t.SwinForImageClassification,
                 t.SwinConfig(image_size=SIZE, patch_size=2, embed_dim=8, depths=[1, 2],
                              num_heads=[1, 2], window_size=2, **labels)),
        "convnext": (t.ConvNextForImageClassification,
                     t.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2,
                                      **labels)),
        "mobilevit": (t.MobileViTForImageClassification,
                      t.MobileViTConfig(image_size=SIZE, hidden_sizes=[16, 16, 16],
                                        neck_hidden_sizes=[8, 8, 8, 8, 8, 8, 16],
                                        num_attention_heads=2, **labels)),
    }  # fmt: skip
    cls, config = configs[name]
    return cls(config).eval()


@pytest.mark.parametrize("name", ["deit", "beit", "swin", "convnext", "mobilevit"])
def test_vision_families_train_by_default_keeping_old_rows(images, name, caplog):
    """Default options on each family: the top block on cached inputs where they stand for the
    model (DeiT, BEiT whose first pass caches a tensor, ConvNeXt's stages), else the whole model
    with the same parameters trained (Swin's stages read more than a block's output, MobileViT's
    blocks see patches), never a crash; the old rows stay bit-identical."""
    from headsurgeon.locate import locate_head
    from headsurgeon.surgery import add_labels
    from headsurgeon.tasks.image import read_image_examples
    from headsurgeon.train import TrainOptions, train_model

    torch.manual_seed(0)
    model = _vision(name)
    add_labels(model, [NEW])
    heads = locate_head(model).paths
    before = {p: model.get_submodule(p).weight.detach()[:3].clone() for p in heads}
    outcome = train_model(
        model, processor(), read_image_examples(images / "new"),
        replay=read_image_examples(images / "old"), holdout=read_image_examples(images / "test"),
        options=TrainOptions(device="cpu", max_steps=2), old_labels=OLD, tolerance=Tolerance(100),
    )  # fmt: skip
    cached = outcome.stats["block_inputs_cached"]
    assert cached == (name in ("deit", "beit", "convnext")), outcome.stats
    assert ("do not reproduce" in caplog.text) == (name == "swin")
    for p in heads:
        assert torch.equal(outcome.model.get_submodule(p).weight[:3], before[p])
    assert outcome.report.n_old_examples == 24


def test_the_key_of_an_image_is_its_content_and_path(tmp_path):
    from headsurgeon.tasks.image import read_image_examples
    from headsurgeon.tasks.image.task import ImageTask

    pngs(tmp_path / "a", "cat", 1, 0)
    example = read_image_examples(tmp_path / "a")[0]
    first = ImageTask().key(example)
    assert first.endswith(f":{example.path}") and len(first.split(":")[0]) == 64
    pngs(tmp_path / "a", "cat", 1, 1)  # the same file name, other pixels
    assert ImageTask().key(example) != first


def _corrupt(d, tmp_path):
    bad = tmp_path / "bad"
    pngs(bad, NEW, 2, 0)
    (bad / NEW / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a cut PNG
    return d / "grown", bad, "1.png"


def _text_csv(d, tmp_path):
    (tmp_path / "text.csv").write_text("text,label\nmy card was stolen,fox\n")
    return d / "grown", tmp_path / "text.csv", "text.csv:1: no column 'image'"


def _missing(d, tmp_path):
    (tmp_path / "list.csv").write_text("image,label\ngone.png,fox\n")
    return d / "grown", tmp_path / "list.csv", "list.csv:2: image not found"


def _no_processor(d, tmp_path):
    import shutil

    model = shutil.copytree(d / "grown", tmp_path / "noproc")
    (model / "preprocessor_config.json").unlink()
    return model, d / "new", "has no preprocessor_config.json"


@pytest.mark.parametrize("bad", [_corrupt, _text_csv, _missing, _no_processor],
                         ids=["corrupt", "text-csv", "missing", "no-processor"])  # fmt: skip
def test_bad_input_is_one_error_line_and_nothing_is_written(images, tmp_path, bad):
    d = images
    model, data, says = bad(d, tmp_path)
    before, inputs = tree_hashes(d), tree_hashes(tmp_path)
    res = run("train", model, "--data", data, "--holdout", d / "test", "-o", tmp_path / "out")
    line = one_error_line(res, says)
    if bad is _text_csv:
        assert "text-classification data" in line and "the model classifies images" in line
    assert tree_hashes(d) == before and tree_hashes(tmp_path) == inputs
    assert not (tmp_path / "out").exists()


def test_a_multi_label_image_model_is_refused_in_one_line(images, tmp_path):
    """train/check/sweep score single-label image classifiers only: a multi-label one would be
    trained with softmax and gated on argmax (a silent wrong result), so it is refused."""
    model = tiny_vit([*OLD, NEW])
    model.config.problem_type = "multi_label_classification"
    model.save_pretrained(tmp_path / "multi")
    processor().save_pretrained(tmp_path / "multi")
    before = tree_hashes(tmp_path)
    res = run("train", tmp_path / "multi", "--data", images / "new", "-o", tmp_path / "out")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1, res.output
    assert "multi-label" in res.stderr and "refused" in res.stderr
    assert tree_hashes(tmp_path) == before and not (tmp_path / "out").exists()
    assert "train, check, sweep" not in run("inspect", tmp_path / "multi").output
