"""Streaming checkpoint surgery: same result as in memory, atomic, refuses broken checkpoints."""

import json
import math
import os
import shutil
import struct
import subprocess
import sys
from array import array
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import headsurgeon
from headsurgeon import headrows
from headsurgeon.checkpoint import (
    add_labels_to_checkpoint,
    remove_labels_from_checkpoint,
    rename_label_in_checkpoint,
)
from headsurgeon.cli import main
from headsurgeon.errors import HeadNotFoundError, OptionsError
from headsurgeon.surgery import remove_labels, rename_label
from tests.common import (
    LABELS,
    label_kwargs,
    tiny_bert,
    tiny_distilbert,
    tiny_llama,
    tiny_roberta,
    tree_hashes,
)

REPO = Path(__file__).resolve().parents[1]
NEW = ["delta", "epsilon"]


def tiny_deit(names=LABELS):
    import transformers

    cfg = transformers.DeiTConfig(
        image_size=16,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        **label_kwargs(names),
    )
    return transformers.DeiTForImageClassificationWithTeacher(cfg).eval()


BUILDERS = {
    "bert": tiny_bert,
    "roberta": tiny_roberta,
    "llama": tiny_llama,
    "distilbert": tiny_distilbert,
    "deit": tiny_deit,
}
HEADS = {
    "bert": ("classifier",),
    "roberta": ("classifier.out_proj",),
    "llama": ("score",),
    "distilbert": ("classifier",),
    "deit": ("cls_classifier", "distillation_classifier"),
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def save(model, folder, sharded=False, dtype=torch.float32):
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial biases, so the bias policies differ
        for p in model.parameters():
            if p.ndim == 1:
                p.normal_()
    model.to(dtype).save_pretrained(folder, max_shard_size="20KB" if sharded else "50GB")
    return Path(folder)


def load(folder):
    from transformers import AutoConfig

    from headsurgeon.models import model_class

    cls = model_class(AutoConfig.from_pretrained(folder))
    model, info = cls.from_pretrained(folder, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    return model


def assert_same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key
    assert a.config.id2label == b.config.id2label and a.config.label2id == b.config.label2id


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def leftovers(folder):
    return sorted(p.name for p in Path(folder).parent.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def llama_sharded(tmp_path_factory):
    return save(tiny_llama(), tmp_path_factory.mktemp("ls") / "llama", sharded=True)


# --- torch-identical numerics -------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 5, 8, 15, 16, 17, 33, 64, 100, 257])
@pytest.mark.parametrize("h", [1, 3, 8, 31, 32, 33, 100, 384])
def test_sums_match_torch_bit_for_bit(n, h):
    x = torch.randn(n, h, generator=torch.Generator().manual_seed(n * 1000 + h)) * 3
    flat = array("f", x.flatten().tolist())
    got = array("f", [v / n for v in headrows.torch_sum_rows(flat, n, h)])
    assert got.tobytes() == x.mean(0).numpy().tobytes()
    column = array("f", x[:, 0].tolist())
    got = array("f", [headrows.torch_sum_vector(column) / n])
    assert got.tobytes() == x[:, 0].contiguous().mean().reshape(1).numpy().tobytes()


@pytest.mark.parametrize("dtype", ["F16", "BF16", "F32"])
def test_dtype_round_trip_matches_torch(dtype):
    torch_dtype = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}[dtype]
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 100
    x[:8] = torch.tensor(
        [math.inf, -math.inf, 1e-40, -0.0, 1 + 2**-8, 1 + 3 * 2**-8, 7e4, math.nan]
    )
    want = x.to(torch_dtype)
    raw = headrows.from_float32(array("f", x.tolist()), dtype)
    size = 4 if dtype == "F32" else 2  # NaN's bits differ between torch's CPU kernels: skip them
    expected = want.view(torch.uint8 if dtype != "F32" else torch.float32).numpy().tobytes()
    assert raw[: 7 * size] + raw[8 * size :] == expected[: 7 * size] + expected[8 * size :]
    back = torch.tensor(headrows.to_float32(raw, dtype).tolist())
    assert (
        torch.equal(back[8:], want.float()[8:]) and back[:7].tolist() == want.float()[:7].tolist()
    )
    assert math.isnan(back[7])


# --- same result as in memory -------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(BUILDERS))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_add_equals_in_memory(arch, dtype, sharded, tmp_path):
    src = save(BUILDERS[arch](), tmp_path / "src", sharded, DTYPES[dtype])
    before = tree_hashes(src)
    result = add_labels_to_checkpoint(src, NEW, tmp_path / "out")
    assert result.head.paths == HEADS[arch] and result.head.method == "header"
    assert result.head.dtype == str(DTYPES[dtype]).removeprefix("torch.")
    expected = load(src)
    headsurgeon.add_labels(expected, NEW)
    assert_same_model(load(tmp_path / "out"), expected)
    assert tree_hashes(src) == before and leftovers(src) == []


@pytest.mark.parametrize(
    "arch, init, bias",
    [("bert", "zeros", "min"), ("bert", "normal", "zeros"), ("llama", "normal", "mean")],
)
def test_policies_equal_in_memory(arch, init, bias, tmp_path):
    src = save(BUILDERS[arch](), tmp_path / "src", sharded=True, dtype=torch.bfloat16)
    add_labels_to_checkpoint(src, NEW, tmp_path / "out", init=init, bias=bias, seed=7)
    expected = load(src)
    headsurgeon.add_labels(expected, NEW, init=init, bias=bias, seed=7)
    assert_same_model(load(tmp_path / "out"), expected)


@pytest.mark.parametrize("arch", ["bert", "deit", "llama"])
def test_remove_and_rename_equal_in_memory(arch, tmp_path):
    src = save(BUILDERS[arch](), tmp_path / "src", sharded=True)
    result = remove_labels_from_checkpoint(src, ["beta"], tmp_path / "out")
    assert result.removed == ["beta"] and result.labels_after == ["alpha", "gamma"]
    expected = load(src)
    remove_labels(expected, ["beta"])
    got = load(tmp_path / "out")
    assert_same_model(got, expected)
    assert got.config.id2label == {0: "alpha", 1: "gamma"}
    hashes = tree_hashes(tmp_path / "out")
    assert rename_label_in_checkpoint(tmp_path / "out", "gamma", "GAMMA") == ["alpha", "GAMMA"]
    rename_label(expected, "gamma", "GAMMA")
    assert_same_model(load(tmp_path / "out"), expected)
    changed = {k for k, v in tree_hashes(tmp_path / "out").items() if hashes.get(k) != v}
    assert changed == {"config.json", "headsurgeon.json"}


def test_label_count_equal_to_hidden_size(tmp_path):
    names = [f"l{i}" for i in range(32)]  # DistilBERT's pre_classifier is also 32 x 32
    src = save(tiny_distilbert(names), tmp_path / "d")
    assert add_labels_to_checkpoint(src, ["x"], tmp_path / "o").head.paths == ("classifier",)
    src = save(tiny_roberta(names), tmp_path / "r")  # classifier.dense is 32 x 32 too
    assert add_labels_to_checkpoint(src, ["x"], tmp_path / "o2").head.paths == (
        "classifier.out_proj",
    )


def test_binary_classifier_is_found_from_headers(tmp_path):
    src = save(tiny_bert(["no", "yes"]), tmp_path / "b")  # token_type_embeddings is 2 x 32 too
    result = add_labels_to_checkpoint(src, ["maybe"], tmp_path / "o")
    assert result.head.paths == ("classifier",) and result.head.method == "header"


def test_ambiguous_headers_fall_back_to_meta_probe(tmp_path):
    names = [f"l{i}" for i in range(32)]  # every BERT attention matrix is 32 x 32
    src = save(tiny_bert(names), tmp_path / "b", sharded=True)
    result = add_labels_to_checkpoint(src, ["x"], tmp_path / "o")
    assert result.head.paths == ("classifier",) and result.head.method == "shape-probe"
    expected = load(src)
    headsurgeon.add_labels(expected, ["x"])
    assert_same_model(load(tmp_path / "o"), expected)


def test_head_layout_that_changes_with_the_count_is_refused(tmp_path):
    import transformers

    from headsurgeon.errors import UnsupportedModelError

    cfg = transformers.LayoutLMv3Config(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        input_size=32,
        patch_size=16,
        max_2d_position_embeddings=64,
        coordinate_size=8,
        shape_size=8,
        **label_kwargs(),
    )
    src = save(transformers.LayoutLMv3ForTokenClassification(cfg), tmp_path / "l")
    before = tree_hashes(src)
    with pytest.raises(UnsupportedModelError, match="different head layout with 12 labels"):
        add_labels_to_checkpoint(src, [f"n{i}" for i in range(9)], tmp_path / "o")
    assert tree_hashes(src) == before and not (tmp_path / "o").exists()
    assert add_labels_to_checkpoint(src, ["n"], tmp_path / "o").head.paths == ("classifier",)


def test_explicit_head_path_and_errors(llama_sharded, tmp_path):
    r = add_labels_to_checkpoint(llama_sharded, ["x"], tmp_path / "o", head_path="score")
    assert r.head.method == "explicit"
    with pytest.raises(HeadNotFoundError, match="model.norm has no weight matrix"):
        add_labels_to_checkpoint(llama_sharded, ["x"], tmp_path / "o2", head_path="model.norm")
    with pytest.raises(OptionsError, match="imprint"):
        add_labels_to_checkpoint(llama_sharded, ["x"], tmp_path / "o3", init="imprint")


def test_files_metadata_index_and_inodes(llama_sharded, tmp_path):
    from headsurgeon.safetensors_io import read_header

    src = tmp_path / "m"
    shutil.copytree(llama_sharded, src)
    index = json.loads((src / "model.safetensors.index.json").read_text())
    head_shard = index["weight_map"]["score.weight"]
    inodes = {p.name: p.stat().st_ino for p in src.iterdir()}
    add_labels_to_checkpoint(src, NEW, tmp_path / "copy")
    add_labels_to_checkpoint(src, NEW, tmp_path / "linked", link=True)
    add_labels_to_checkpoint(src, NEW)  # in place
    for folder in (src, tmp_path / "copy", tmp_path / "linked"):
        new_index = json.loads((folder / "model.safetensors.index.json").read_text())
        headers = [read_header(folder / f) for f in sorted(set(new_index["weight_map"].values()))]
        total = sum(t.nbytes for h in headers for t in h.tensors.values())
        assert new_index["metadata"]["total_size"] == total
        assert all(h.metadata == {"format": "pt"} for h in headers)
        assert read_header(folder / head_shard).tensors["score.weight"].shape == (5, 32)
    for name, ino in inodes.items():  # in place, only the changed files are new
        changed = name in (head_shard, "config.json", "model.safetensors.index.json")
        assert ((src / name).stat().st_ino != ino) == changed, name
        assert ((tmp_path / "linked" / name).stat().st_ino == ino) == (not changed), name
        assert (tmp_path / "copy" / name).stat().st_ino != ino
    assert leftovers(src) == []


def test_per_file_fallback_without_folder_swap(llama_sharded, tmp_path, monkeypatch):
    from headsurgeon import atomic

    def unavailable(a, b):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(atomic, "exchange", unavailable)
    src = tmp_path / "m"
    shutil.copytree(llama_sharded, src)
    add_labels_to_checkpoint(src, NEW)
    expected = load(llama_sharded)
    headsurgeon.add_labels(expected, NEW)
    assert_same_model(load(src), expected)
    assert leftovers(src) == []


def test_pickle_only_needs_opt_in(tmp_path):
    model = tiny_bert()
    src = tmp_path / "bin"
    model.save_pretrained(src)
    (src / "model.safetensors").unlink()
    torch.save(model.state_dict(), src / "pytorch_model.bin")
    before = tree_hashes(src)
    res = run("add-label", src, "--name", "x", "-o", tmp_path / "o")
    assert res.exit_code == 1 and "--allow-pickle" in res.output and res.output.count("\n") == 1
    assert tree_hashes(src) == before and not (tmp_path / "o").exists() and leftovers(src) == []
    res = run("add-label", src, "--name", "x", "-o", tmp_path / "o", "--allow-pickle")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "model.safetensors").exists()
    assert not (tmp_path / "o" / "pytorch_model.bin").exists()
    headsurgeon.add_labels(model, ["x"])
    assert_same_model(load(tmp_path / "o"), model)
    res = run("add-label", src, "--name", "x", "--allow-pickle")  # in place: bin -> safetensors
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in src.iterdir())
    assert names == ["config.json", "headsurgeon.json", "model.safetensors"]
    assert_same_model(load(src), model)
    assert leftovers(src) == []


# --- broken checkpoints: one line, exit 1, nothing written ---------------------------------


def _missing_shard(folder, index):
    (folder / index["weight_map"]["model.embed_tokens.weight"]).unlink()


def _corrupt_header(folder, index):
    path = folder / index["weight_map"]["score.weight"]
    data = bytearray(path.read_bytes())
    data[8:12] = b"}{!x"
    path.write_bytes(bytes(data))


def _huge_header_length(folder, index):
    path = folder / index["weight_map"]["model.norm.weight"]
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 1 << 40) + data[8:])


def _truncated_head_shard(folder, index):
    path = folder / index["weight_map"]["score.weight"]
    path.write_bytes(path.read_bytes()[:-7])


def _truncated_other_shard(folder, index):
    path = folder / index["weight_map"]["model.embed_tokens.weight"]
    path.write_bytes(path.read_bytes()[:-100])


def _index_names_absent_tensor(folder, index):
    shards = sorted(set(index["weight_map"].values()))
    wrong = next(s for s in shards if s != index["weight_map"]["score.weight"])
    index["weight_map"]["score.weight"] = wrong
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def _config_disagrees(folder, index):
    config = json.loads((folder / "config.json").read_text())
    names = [*LABELS, "extra"]
    config["id2label"] = {str(i): n for i, n in enumerate(names)}
    config["label2id"] = {n: i for i, n in enumerate(names)}
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "damage, message",
    [
        (_missing_shard, "which is missing"),
        (_corrupt_header, "corrupt header (not JSON"),
        (_huge_header_length, "corrupt or truncated header"),
        (_truncated_head_shard, "is truncated: the header promises"),
        (_truncated_other_shard, "is truncated: the header promises"),
        (_index_names_absent_tensor, "but model-"),
        (_config_disagrees, "score.weight has 3 rows but config.json has 4 labels"),
    ],
)
@pytest.mark.parametrize("in_place", [False, True], ids=["to-new-folder", "in-place"])
def test_broken_checkpoint_is_refused_untouched(llama_sharded, tmp_path, damage, message, in_place):
    src = tmp_path / "m"
    shutil.copytree(llama_sharded, src)
    damage(src, json.loads((src / "model.safetensors.index.json").read_text()))
    before = tree_hashes(src)
    out = [] if in_place else ["-o", tmp_path / "out"]
    for args in (["add-label", src, "--name", "x"], ["remove-label", src, "alpha"]):
        res = run(*args, *out)
        assert res.exit_code == 1, res.output
        assert message in res.output and res.output.count("\n") == 1, res.output
        assert res.output.startswith("error: ") and "Traceback" not in res.output
        assert tree_hashes(src) == before
        assert not (tmp_path / "out").exists() and leftovers(src) == []


@pytest.mark.parametrize("in_place", [False, True], ids=["to-new-folder", "in-place"])
def test_disk_full_while_writing_changes_nothing(llama_sharded, tmp_path, monkeypatch, in_place):
    import headsurgeon.checkpoint as checkpoint

    def full(path, *args):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_file", full)
    src = tmp_path / "m"
    shutil.copytree(llama_sharded, src)
    before = tree_hashes(src)
    res = run("add-label", src, "--name", "x", *([] if in_place else ["-o", tmp_path / "out"]))
    assert res.exit_code == 1 and res.output.count("\n") == 1
    assert "No space left on device" in res.output and "nothing was changed" in res.output
    assert tree_hashes(src) == before and leftovers(src) == [] and not (tmp_path / "out").exists()


# --- CLI ------------------------------------------------------------------------------------


def test_cli_streaming_path_imports_no_torch_transformers_or_numpy(llama_sharded, tmp_path):
    code = (
        "import sys; from headsurgeon.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))"
    )
    out = tmp_path / "o"
    for args in (
        ["add-label", str(llama_sharded), "--name", "x", "-o", str(out)],
        ["remove-label", str(out), "alpha"],
        ["rename-label", str(out), "beta", "BETA", "--json"],
    ):
        proc = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert json.loads((out / "config.json").read_text())["id2label"] == {
        "0": "BETA",
        "1": "gamma",
        "2": "x",
    }


def test_cli_remove_and_rename_json(llama_sharded, tmp_path):
    (tmp_path / "o").mkdir()  # an empty output folder is fine
    res = run(
        "remove-label", llama_sharded, "alpha", "gamma", "-o", tmp_path / "o", "--json", "--link"
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["labels_after"] == ["beta"]
    shard = json.loads((llama_sharded / "model.safetensors.index.json").read_text())["weight_map"]
    embed = shard["model.embed_tokens.weight"]
    assert (tmp_path / "o" / embed).stat().st_ino == (llama_sharded / embed).stat().st_ino
    res = run("rename-label", tmp_path / "o", "beta", "only", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["labels_after"] == ["only"]
    events = json.loads((tmp_path / "o" / "headsurgeon.json").read_text())["events"]
    assert [e["op"] for e in events] == ["remove-label", "rename-label"]
    info = json.loads(run("inspect", tmp_path / "o", "--json").output)
    assert info["labels"] == ["only"] and info["head"]["out_features"] == 1
    for args, message in [
        (["remove-label", tmp_path / "o", "only"], "cannot remove every label"),
        (["remove-label", tmp_path / "o", "nope"], "unknown label(s): nope"),
        (["rename-label", tmp_path / "o", "nope", "x"], "unknown label(s): nope"),
    ]:
        res = run(*args)
        assert res.exit_code == 1 and message in res.output and res.output.count("\n") == 1


# --- killed in the middle -------------------------------------------------------------------

KILLER = """
import os, shutil, sys
from headsurgeon import atomic, safetensors_io
budget = int(sys.argv[1])
def step(func):
    def wrapped(*args, **kwargs):
        global budget
        budget -= 1
        if budget < 0:
            os._exit(9)  # like SIGKILL: no cleanup, no finally blocks
        return func(*args, **kwargs)
    return wrapped
os.replace, os.link, os.fsync, os.chmod = map(step, (os.replace, os.link, os.fsync, os.chmod))
shutil.rmtree = step(shutil.rmtree)
atomic.exchange = step(atomic.exchange)
safetensors_io.copy_range = step(safetensors_io.copy_range)
from headsurgeon.checkpoint import add_labels_to_checkpoint
add_labels_to_checkpoint(sys.argv[2], ["delta"])
"""


def test_killed_at_every_step_leaves_old_or_new_model(llama_sharded, tmp_path):
    done = tmp_path / "done"
    shutil.copytree(llama_sharded, done)
    add_labels_to_checkpoint(done, ["delta"])
    old, new = tree_hashes(llama_sharded), tree_hashes(done)
    new.pop("headsurgeon.json")
    seen = set()
    for budget in range(200):
        folder = tmp_path / f"k{budget}" / "m"
        shutil.copytree(llama_sharded, folder)
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, str(budget), str(folder)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        now = tree_hashes(folder)
        if now == old:
            seen.add("old")
        else:
            assert now.pop("headsurgeon.json", None) and now == new, budget
            seen.add("new")
            assert load(folder).config.id2label[3] == "delta"
        if proc.returncode == 0:
            assert leftovers(folder) == []
            break
        assert proc.returncode == 9, proc.stderr
    else:
        pytest.fail("the edit never finished")
    assert seen == {"old", "new"} and budget > 5


def test_benchmark_sparse_checkpoint_grows_in_place(tmp_path, monkeypatch):
    import importlib.util

    from headsurgeon.safetensors_io import read_header

    spec = importlib.util.spec_from_file_location("surgery_bench", REPO / "benchmarks/surgery.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "surgery_bench", bench)
    spec.loader.exec_module(bench)
    assert 0.75e9 < bench.llama_config(0.8)["num_hidden_layers"] * 50.4e6 + 65.5e6 < 0.85e9
    monkeypatch.setattr(bench, "SHARD_BYTES", 20 * 10**6)
    params = bench.build_sparse(0.1, tmp_path / "sparse")
    assert params > 0.1e9
    result = add_labels_to_checkpoint(tmp_path / "sparse", ["new"])
    assert result.head.paths == ("score",) and result.head.method == "header"
    index = json.loads((tmp_path / "sparse" / "model.safetensors.index.json").read_text())
    shard = read_header(tmp_path / "sparse" / index["weight_map"]["score.weight"])
    assert shard.tensors["score.weight"].shape == (4, 2048)
