"""Image classification data (headsurgeon.tasks.image): layouts, decoding, processor, batches."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from headsurgeon.errors import CheckpointError, DataError, HeadSurgeonError
from headsurgeon.tasks.image import (
    ImageExample,
    check_image_labels,
    load_image_processor,
    open_rgb,
    pixel_batches,
    read_image_examples,
)
from tests.common import tree_hashes

PIL = pytest.importorskip("PIL", reason='Pillow is needed: pip install -e ".[dev]"')
from PIL import Image  # noqa: E402

SIZE = 16
LABELS = ["cat", "dog", "owl"]


def png(path, mode="RGB", color=(200, 30, 30), size=(20, 12)):
    """A small image file at ``path`` (parents created); ``mode`` as Pillow names it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def tiny_vit(labels=LABELS):
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(
        image_size=SIZE,
        patch_size=4,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    return ViTForImageClassification(cfg).eval()


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    """A tiny ViT classifier (cat/dog/owl) with its ViTImageProcessor, as a user saves one."""
    from transformers import ViTImageProcessor

    path = tmp_path_factory.mktemp("vit") / "vit"
    tiny_vit().save_pretrained(path)
    ViTImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(path)
    return path


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message  # the CLI prints it as one error: line
    return message


# --- layouts --------------------------------------------------------------------------------


def test_imagefolder_layout_labels_images_by_their_folder(tmp_path):
    root = tmp_path / "pets"
    png(root / "dog" / "b.jpg")
    png(root / "cat" / "2.png")
    png(root / "cat" / "1.PNG")
    png(root / "owl" / "x.webp")
    (root / "cat" / "notes.txt").write_text("not an image")
    png(root / "cat" / ".hidden.png")
    png(root / ".cache" / "z.png")
    examples = read_image_examples(root)
    assert [(e.path.relative_to(root).as_posix(), e.label) for e in examples] == [
        ("cat/1.PNG", "cat"),
        ("cat/2.png", "cat"),
        ("dog/b.jpg", "dog"),
        ("owl/x.webp", "owl"),
    ]
    assert all(e.line is None and e.where == str(e.path) for e in examples)


def test_metadata_files_give_the_labels_as_datasets_reads_them(tmp_path, caplog):
    root = tmp_path / "pets"
    png(root / "imgs" / "a.png")
    png(root / "imgs" / "b.png")
    png(root / "sub" / "c.png")
    png(root / "imgs" / "unlisted.png")
    (root / "metadata.csv").write_text(
        "file_name,label,caption\nimgs/a.png,cat,x\nimgs/b.png,owl,y\n"
    )
    (root / "sub" / "metadata.csv").write_text("file_name,label,caption\nc.png,dog,z\n")
    with caplog.at_level(logging.WARNING):
        examples = read_image_examples(root)
    assert [(e.path.name, e.label, e.line) for e in examples] == [
        ("a.png", "cat", 2),
        ("b.png", "owl", 3),
        ("c.png", "dog", 2),  # relative to its own metadata file's folder
    ]
    assert examples[2].source == str(root / "sub" / "metadata.csv")
    assert "1 image(s) not listed" in caplog.text and "unlisted.png" in caplog.text

    jroot = tmp_path / "j"
    png(jroot / "a.png")
    (jroot / "metadata.jsonl").write_text('{"file_name": "a.png", "species": 3}\n')
    [example] = read_image_examples(jroot, label_column="species")
    assert example.label == "3" and example.line == 1


def test_data_files_hold_paths_relative_to_themselves(tmp_path):
    png(tmp_path / "imgs" / "a.png")
    png(tmp_path / "imgs" / "b.png")
    outside = png(tmp_path / "elsewhere" / "c.png")
    data = tmp_path / "data"
    data.mkdir()
    (data / "new.csv").write_text(f"image,label\n../imgs/a.png,cat\n{outside},dog\n")
    (data / "new.tsv").write_text("pic\tkind\n../imgs/b.png\towl\n")
    (data / "new.jsonl").write_text('{"image": "../imgs/a.png", "label": "cat"}\n\n')
    (data / "meta.csv").write_text("file_name,label\n../imgs/b.png,dog\n")

    rows = read_image_examples(data / "new.csv")
    assert [(e.path.resolve(), e.label, e.line) for e in rows] == [
        ((tmp_path / "imgs" / "a.png").resolve(), "cat", 2),
        (outside, "dog", 3),
    ]
    assert rows[0].where == f"{data / 'new.csv'}:2"
    [tsv] = read_image_examples(data / "new.tsv", image_column="pic", label_column="kind")
    assert (tsv.path.name, tsv.label) == ("b.png", "owl")
    [jsonl] = read_image_examples(data / "new.jsonl")
    assert (jsonl.path.name, jsonl.label, jsonl.line) == ("a.png", "cat", 1)
    [meta] = read_image_examples(data / "meta.csv")  # datasets' file_name column
    assert (meta.path.name, meta.label) == ("b.png", "dog")


# --- decoding and preprocessing -----------------------------------------------------------


def test_grey_palette_transparent_and_16_bit_images_come_out_rgb(tmp_path, vit_folder):
    import numpy as np

    grey = png(tmp_path / "grey.png", "L", 128)
    palette = tmp_path / "palette.gif"
    Image.new("RGB", (20, 12), (10, 200, 10)).convert("P").save(palette)
    clear = png(tmp_path / "clear.png", "RGBA", (0, 0, 0, 0))  # fully transparent black
    half = png(tmp_path / "half.png", "LA", (0, 255))
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((12, 20), 40000, dtype=np.uint16)).save(deep)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (20, 12), (0, 255, 255, 0)).save(cmyk)

    assert Image.open(deep).mode == "I;16"
    images = {p.name: open_rgb(p) for p in (grey, palette, clear, half, deep, cmyk)}
    assert {im.mode for im in images.values()} == {"RGB"}
    assert {im.size for im in images.values()} == {(20, 12)}
    assert images["grey.png"].getpixel((0, 0)) == (128, 128, 128)
    assert images["palette.gif"].getpixel((0, 0))[1] > 150
    assert images["clear.png"].getpixel((0, 0)) == (255, 255, 255)  # laid on white
    assert images["half.png"].getpixel((0, 0)) == (0, 0, 0)
    assert images["deep.png"].getpixel((0, 0)) == (156,) * 3  # 40000/256, not clipped to 255
    assert images["cmyk.jpg"].getpixel((0, 0))[0] > 200

    processor = load_image_processor(vit_folder)
    with pytest.raises(ValueError):  # why: the processor itself refuses a grey image
        processor(images=[Image.open(grey)], return_tensors="pt")
    examples = [ImageExample(p, "cat", "test") for p in (grey, palette, clear, half, deep, cmyk)]
    [batch] = pixel_batches(examples, processor, batch_size=8)
    assert batch["pixel_values"].shape == (6, 3, SIZE, SIZE)


def test_pixel_batches_feed_the_model(tmp_path, vit_folder):
    import torch
    from transformers import AutoModelForImageClassification

    root = tmp_path / "pets"
    for k in range(5):
        png(root / LABELS[k % 3] / f"{k}.png", color=(k * 40, 0, 0), size=(30 + k, 20))
    examples = read_image_examples(root)
    model = AutoModelForImageClassification.from_pretrained(vit_folder).eval()
    processor = load_image_processor(vit_folder)
    batches = list(pixel_batches(examples, processor, batch_size=2, label2id=model.config.label2id))
    assert [len(b["labels"]) for b in batches] == [2, 2, 1]
    assert all(b["pixel_values"].shape[1:] == (3, SIZE, SIZE) for b in batches)
    labels = torch.cat([b["labels"] for b in batches]).tolist()
    assert labels == [model.config.label2id[e.label] for e in examples]
    with torch.no_grad():
        out = model(**batches[0])
    assert out.logits.shape == (2, 3) and torch.isfinite(out.loss)
    with pytest.raises(HeadSurgeonError, match="batch size"):
        next(pixel_batches(examples, processor, batch_size=0))


# --- bad input: one line naming the file (and line), nothing written ------------------------


def test_corrupt_and_unreadable_images_name_the_file_and_line(tmp_path):
    good = png(tmp_path / "imgs" / "good.png", size=(64, 64))
    (tmp_path / "imgs" / "junk.png").write_bytes(b"this is not a png")
    (tmp_path / "imgs" / "cut.png").write_bytes(good.read_bytes()[:60])
    (tmp_path / "data.csv").write_text(
        "image,label\nimgs/good.png,cat\nimgs/junk.png,cat\nimgs/cut.png,dog\n"
    )
    before = tree_hashes(tmp_path)
    good_row, junk, cut = read_image_examples(tmp_path / "data.csv")
    assert open_rgb(good_row).size == (64, 64)
    message = refused(open_rgb, junk)
    assert message.startswith(f"{tmp_path / 'data.csv'}:3: ") and "junk.png" in message
    assert "not an image" in message
    message = refused(open_rgb, cut)
    assert (
        message.startswith(f"{tmp_path / 'data.csv'}:4: cannot read image ")
        and "cut.png" in message
    )
    assert refused(open_rgb, tmp_path / "imgs" / "nope.png").endswith(
        "image not found: " + str(tmp_path / "imgs" / "nope.png")
    )
    assert tree_hashes(tmp_path) == before


def test_missing_images_are_refused_when_the_data_is_read(tmp_path):
    png(tmp_path / "imgs" / "a.png")
    (tmp_path / "imgs" / "sub").mkdir()
    (tmp_path / "data.csv").write_text(
        "image,label\nimgs/a.png,cat\nimgs/gone.png,cat\nimgs/b.png,dog\n"
    )
    (tmp_path / "dir.csv").write_text("image,label\nimgs/sub,cat\n")
    (tmp_path / "url.csv").write_text("image,label\nhttps://example.org/a.png,cat\n")
    (tmp_path / "empty.csv").write_text("image,label\n,cat\n")
    folder = tmp_path / "meta"
    png(folder / "a.png")
    (folder / "metadata.jsonl").write_text(
        '{"file_name": "a.png", "label": "cat"}\n{"file_name": "b.png", "label": "cat"}\n'
    )
    before = tree_hashes(tmp_path)
    message = refused(read_image_examples, tmp_path / "data.csv")
    assert message == (
        f"{tmp_path / 'data.csv'}:3: image not found: {tmp_path / 'imgs' / 'gone.png'} "
        "(and 1 more rows whose image is missing)"
    )
    assert "a folder, not an image file" in refused(read_image_examples, tmp_path / "dir.csv")
    assert "is a URL" in refused(read_image_examples, tmp_path / "url.csv")
    assert ":2: empty or non-text 'image'" in refused(read_image_examples, tmp_path / "empty.csv")
    assert refused(read_image_examples, folder).startswith(
        f"{folder / 'metadata.jsonl'}:2: image not found"
    )
    assert (
        refused(read_image_examples, tmp_path / "absent.csv")
        == f"data file not found: {tmp_path / 'absent.csv'}"
    )
    assert tree_hashes(tmp_path) == before


def test_unknown_labels_name_where_they_are_listed(tmp_path, vit_folder):
    png(tmp_path / "a.png")
    (tmp_path / "new.csv").write_text("image,label\na.png,cat\na.png,fox\na.png,fox\na.png,emu\n")
    examples = read_image_examples(tmp_path / "new.csv")
    message = refused(check_image_labels, examples, LABELS, source="--data new.csv")
    assert message == (
        f"--data new.csv has label(s) the model does not have: 'emu' (1 image, first at "
        f"{tmp_path / 'new.csv'}:5), 'fox' (2 images, first at {tmp_path / 'new.csv'}:3); "
        "add them first (add-label or --add) or fix the data"
    )
    held = refused(
        check_image_labels,
        examples,
        LABELS,
        only_known="--holdout must hold only the model's labels",
    )
    assert held.endswith(
        "--holdout must hold only the model's labels: remove those 3 image(s) from it"
    )
    processor = load_image_processor(vit_folder)
    with pytest.raises(DataError, match="'fox'"):  # before any image is decoded
        next(pixel_batches(examples, processor, label2id={n: i for i, n in enumerate(LABELS)}))
    check_image_labels(examples[:1], LABELS)


def test_data_of_another_task_says_what_an_image_model_reads(tmp_path):
    (tmp_path / "texts.csv").write_text("text,label\nmy card was stolen,lost_card\n")
    (tmp_path / "tags.conll").write_text("EU\tB-ORG\nrejects\tO\n")
    (tmp_path / "tags.tsv").write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
    )
    (tmp_path / "tags.jsonl").write_text('{"tokens": ["EU"], "tags": ["B-ORG"]}\n')
    (tmp_path / "sounds.csv").write_text("audio,label\nclip.wav,dog\n")
    (tmp_path / "other.csv").write_text("path,label\na.png,cat\n")
    (tmp_path / "nolabel.csv").write_text("image,kind\na.png,cat\n")
    texts_dir = tmp_path / "texts"
    texts_dir.mkdir()
    (texts_dir / "train.csv").write_text("text,label\na b,c\n")
    before = tree_hashes(tmp_path)
    text = refused(read_image_examples, tmp_path / "texts.csv")
    assert text.startswith(
        f"{tmp_path / 'texts.csv'}:1: no column 'image' (found: 'text', 'label')"
    )
    assert "looks like text-classification data" in text and "DIR/<label>/<image>" in text
    conll = refused(read_image_examples, tmp_path / "tags.conll")
    assert "unknown format '.conll'" in conll and "an image model reads" in conll
    for name in ("tags.tsv", "tags.jsonl"):
        assert "looks like token-classification data" in refused(
            read_image_examples, tmp_path / name
        )
    assert "looks like audio data" in refused(read_image_examples, tmp_path / "sounds.csv")
    other = refused(read_image_examples, tmp_path / "other.csv")
    assert "no column 'image'" in other and "--image-column/--label-column" in other
    assert "no column 'label' (found: 'image', 'kind')" in refused(
        read_image_examples, tmp_path / "nolabel.csv"
    )
    assert "holds no image" in refused(read_image_examples, texts_dir)
    assert "found 1 .csv file(s)" in refused(read_image_examples, texts_dir)
    assert tree_hashes(tmp_path) == before


def test_folder_layouts_that_cannot_be_read_say_how_to_fix_them(tmp_path):
    flat = tmp_path / "flat"
    png(flat / "a.png")
    mixed = tmp_path / "mixed"
    png(mixed / "cat" / "a.png")
    png(mixed / "cat" / "young" / "b.png")
    splits = tmp_path / "splits"
    png(splits / "train" / "cat" / "a.png")
    png(splits / "test" / "cat" / "b.png")
    both = tmp_path / "both"
    png(both / "a.png")
    (both / "metadata.csv").write_text("file_name,label\na.png,cat\n")
    (both / "metadata.jsonl").write_text('{"file_name": "a.png", "label": "cat"}\n')
    parquet = tmp_path / "parquet"
    png(parquet / "a.png")
    (parquet / "metadata.parquet").write_bytes(b"PAR1")
    nolabel = tmp_path / "nolabel"
    png(nolabel / "a.png")
    (nolabel / "metadata.csv").write_text("file_name,caption\na.png,a cat\n")
    badname = tmp_path / "badname"
    png(badname / " cat" / "a.png")
    before = tree_hashes(tmp_path)
    assert "has no label folder" in refused(read_image_examples, flat)
    assert "images at different depths" in refused(read_image_examples, mixed)
    assert "holds data set splits (test, train)" in refused(read_image_examples, splits)
    assert "metadata files of two formats" in refused(read_image_examples, both)
    assert "parquet metadata is not read" in refused(read_image_examples, parquet)
    message = refused(read_image_examples, nolabel)
    assert message.startswith(f"{nolabel / 'metadata.csv'}:1: no column 'label'")
    assert "remove the metadata file to label images by folder" in message
    assert "folder's name is not a usable label" in refused(read_image_examples, badname)
    assert (
        refused(read_image_examples, tmp_path / "absent")
        == f"data file not found: {tmp_path / 'absent'}"
    )
    assert tree_hashes(tmp_path) == before


def test_a_model_folder_without_its_processor_says_how_to_add_it(tmp_path, vit_folder):
    from transformers import ViTImageProcessor

    bare = tmp_path / "bare"
    tiny_vit().save_pretrained(bare)
    before = tree_hashes(bare)
    with pytest.raises(CheckpointError) as info:
        load_image_processor(bare)
    message = str(info.value)
    assert message.startswith(f"{bare} has no preprocessor_config.json")
    assert "AutoImageProcessor.from_pretrained('<the backbone's Hub id or folder>')" in message
    assert f".save_pretrained('{bare}')" in message
    (bare / "headsurgeon.json").write_text(
        json.dumps({"parent": "org/vit-pets", "parent_labels": LABELS, "events": []})
    )
    with pytest.raises(CheckpointError, match=r"from_pretrained\('org/vit-pets'\)"):
        load_image_processor(bare)
    (bare / "headsurgeon.json").unlink()
    assert tree_hashes(bare) == before

    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(bare)
    with pytest.raises(CheckpointError, match="makes 32x32 images but the model takes 16x16"):
        load_image_processor(bare)
    (bare / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot load this image processor"):
        load_image_processor(bare)


def test_without_pillow_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    image = png(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    message = refused(open_rgb, image)
    assert 'pip install "headsurgeon[image]"' in message


def test_importing_the_package_loads_no_heavy_library():
    code = (
        "import sys, headsurgeon.tasks.image; "
        "print(sorted(m for m in ('PIL', 'torch', 'transformers', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the image benchmark's data and parent (benchmarks/image_data.py, image_parent.py) ------


@pytest.fixture
def bench(monkeypatch, tmp_path):
    """The benchmark scripts as modules, reading synthetic 8x8 "digits" (no scikit-learn)."""
    import importlib

    import numpy as np

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    image_data = importlib.import_module("image_data")
    image_parent = importlib.import_module("image_parent")
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(10), 12)
    images = rng.integers(0, 17, (len(targets), 8, 8)).astype(float)
    monkeypatch.setattr(image_data, "load_digits", lambda: (images, targets))
    monkeypatch.setattr(image_data, "CACHE", tmp_path / "images")
    return image_data, image_parent


def test_benchmark_digits_are_seeded_disjoint_splits_in_the_imagefolder_layout(tmp_path, bench):
    """The parent's images (also the replay), the holdout, the new digits' and the test split:
    disjoint, seeded, in the imagefolder layout (16x16 RGB PNGs)."""
    image_data, _ = bench
    split = image_data.Split(old=7, size=16, test=2, holdout=2)
    folder = image_data.data_folder(split)
    assert folder.name == f"digits-{split.key()}" and folder.parent == image_data.CACHE
    assert image_data.data_folder(split) == folder  # built once
    info = image_data.splits_info(folder)
    old = [image_data.NAMES[d] for d in split.old_digits()]
    assert info["old_labels"] == old and len(info["new_labels"]) == 3
    rows = {}
    for name in image_data.FOLDERS:
        examples = read_image_examples(folder / name)
        rows[name] = {(e.label, e.path.stem) for e in examples}
        assert {e.label for e in examples} == set(
            {"parent": old, "holdout": old}.get(name)
            or (info["new_labels"] if name == "new" else image_data.NAMES)
        )
    assert len(rows["test"]) == 10 * 2 and len(rows["holdout"]) == 7 * 2
    disjoint = [rows[n] for n in ("parent", "holdout", "new", "test")]
    assert sum(map(len, disjoint)) == len(set().union(*disjoint))
    image = open_rgb(next((folder / "test" / "zero").iterdir()))
    assert (image.mode, image.size) == ("RGB", (16, 16))
    assert image_data.assign(split, image_data.load_digits()[1]) == image_data.assign(
        split, image_data.load_digits()[1]
    )
