"""Benchmark: streaming ``headsurgeon add-label`` against load-cat-save with transformers.

Builds (once, cached under ``benchmarks/.cache/``) a Llama-style sequence classifier of
``--params`` billion parameters in bf16, sharded at 500 MB, then runs each side as a separate
process, interleaved ``--repeats`` times, and reports the median wall time and peak RSS (from
``os.wait4`` of each child; ``sync`` before each run, untimed, so no run pays for the previous
one's writeback) of:

  (a) load-cat-save: ``from_pretrained`` + ``torch.cat`` a mean row + ``save_pretrained``
  (b) ``headsurgeon add-label MODEL --name new`` in place
  (c) ``headsurgeon add-label MODEL --name new -o OUT`` (unchanged shards copied)
  (d) ``headsurgeon add-label MODEL --name new -o OUT --link`` (unchanged shards hard-linked)
  (e) ``cp -r MODEL OUT``, the floor for (c)

and finally grows a 7B-parameter-shaped checkpoint (real headers, sparse zero data) in place,
checking its peak RSS stays under 1 GiB.

Usage:
    python benchmarks/surgery.py                 # ~0.8B fixture, 5 interleaved repeats
    python benchmarks/surgery.py --params 2 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
SHARD = "500MB"
SHARD_BYTES = 500 * 10**6
LABELS = ["alpha", "beta", "gamma"]
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO),
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}

LOAD_CAT_SAVE = """
import sys, torch
from transformers import AutoModelForSequenceClassification
src, out = sys.argv[1], sys.argv[2]
model = AutoModelForSequenceClassification.from_pretrained(src, dtype=torch.bfloat16)
old = model.score
new = torch.nn.Linear(old.in_features, old.out_features + 1, bias=False, dtype=old.weight.dtype)
with torch.no_grad():
    new.weight.copy_(torch.cat([old.weight, old.weight.float().mean(0, keepdim=True).to(old.weight.dtype)]))
model.score = new
names = [model.config.id2label[i] for i in range(old.out_features)] + ["new"]
model.config.id2label = dict(enumerate(names))
model.config.label2id = {n: i for i, n in enumerate(names)}
model.num_labels = len(names)
model.save_pretrained(out, max_shard_size=sys.argv[3])
"""


def llama_config(params_b: float) -> dict:
    """A Llama config of about ``params_b`` billion parameters (hidden 2048, or 7B's shape)."""
    if params_b >= 5:
        hidden, inter, vocab = 4096, 11008, 32000
    else:
        hidden, inter, vocab = 2048, 5504, 32000
    per_layer = 4 * hidden * hidden + 3 * hidden * inter + 2 * hidden
    layers = max(1, round((params_b * 1e9 - vocab * hidden) / per_layer))
    return {
        "architectures": ["LlamaForSequenceClassification"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": hidden // 128,
        "num_key_value_heads": hidden // 128,
        "vocab_size": vocab,
        "max_position_embeddings": 2048,
        "pad_token_id": 0,
        "dtype": "bfloat16",
        "id2label": {str(i): n for i, n in enumerate(LABELS)},
        "label2id": {n: i for i, n in enumerate(LABELS)},
    }


def build_fixture(params_b: float) -> Path:
    """Build (or reuse) the bf16 fixture with transformers' own save_pretrained."""
    folder = CACHE / f"llama-{params_b:g}B-bf16"
    if (folder / "config.json").is_file():
        return folder
    print(f"building the {params_b:g}B fixture in {folder} (once) ...", flush=True)
    code = """
import sys, json, torch, transformers
folder, cfg = sys.argv[1], json.loads(sys.argv[2])
config = transformers.LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
config.architectures = cfg["architectures"]
with torch.device("meta"):
    model = transformers.LlamaForSequenceClassification(config)
model = model.to(torch.bfloat16).to_empty(device="cpu")
gen = torch.Generator().manual_seed(0)
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.02, generator=gen)
model.save_pretrained(folder, max_shard_size=sys.argv[3])
n = sum(p.numel() for p in model.parameters())
print(f"{n / 1e9:.3f}B parameters")
"""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", code, str(tmp), json.dumps(llama_config(params_b)), SHARD],
        check=True,
        env=ENV,
    )
    os.replace(tmp, folder)
    return folder


def build_sparse(params_b: float, folder: Path) -> int:
    """Write a checkpoint of ``params_b`` billion bf16 parameters: real headers, sparse zeros."""
    sys.path.insert(0, str(REPO))
    from headsurgeon.safetensors_io import header_bytes

    cfg = llama_config(params_b)
    h, i, v, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], len(LABELS)
    shapes = [("model.embed_tokens.weight", (v, h))]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes += [(p + f"self_attn.{x}_proj.weight", (h, h)) for x in "qkvo"]
        shapes += [(p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h))]
        shapes += [(p + "mlp.down_proj.weight", (h, i))]
        shapes += [
            (p + "input_layernorm.weight", (h,)),
            (p + "post_attention_layernorm.weight", (h,)),
        ]
    shapes += [("model.norm.weight", (h,)), ("score.weight", (n, h))]
    shards, size = [[]], 0
    for name, shape in shapes:  # greedy, like save_pretrained
        nbytes = 2 * math.prod(shape)
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(_Spec(name, "BF16", shape))
        size += nbytes
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    weight_map, total = {}, 0
    for k, entries in enumerate(shards, 1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        data = sum(e.nbytes for e in entries)
        head = header_bytes(entries, {"format": "pt"})
        with open(folder / fname, "wb") as fh:
            fh.write(head)
            fh.truncate(len(head) + data)  # sparse: no data blocks are written
        weight_map.update({e.name: fname for e in entries})
        total += data
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    return sum(2 * math.prod(s) for _, s in shapes) // 2


@dataclass(frozen=True)
class _Spec:
    """A tensor known by its header entry only (its bytes are never held)."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return 2 * math.prod(self.shape)


def measure(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in MiB) of that process alone."""
    os.sync()  # start each run with no dirty pages left by the previous one (not timed)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=float, default=0.8, help="fixture size, billions (0.8)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs per side (5)")
    parser.add_argument("--sparse-params", type=float, default=7.0, help="sparse check size (7)")
    args = parser.parse_args(argv)

    fixture = build_fixture(args.params)
    work = CACHE / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cli = [sys.executable, "-m", "headsurgeon", "add-label"]
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in "abcde"}
    model, out = work / "model", work / "out"
    commands = {
        "a": [sys.executable, "-c", LOAD_CAT_SAVE, str(fixture), str(out), SHARD],
        "b": [*cli, str(model), "--name", "new"],
        "c": [*cli, str(fixture), "--name", "new", "-o", str(out)],
        "d": [*cli, str(fixture), "--name", "new", "-o", str(out), "--link"],
        "e": ["cp", "-r", str(fixture), str(out)],
    }
    for r in range(args.repeats):
        order = "abcde"[r % 5 :] + "abcde"[: r % 5]  # rotated: no side always follows another
        for side in order:
            shutil.rmtree(out, ignore_errors=True)
            if side == "b":  # a fresh copy to edit in place (untimed)
                # Hard links: headsurgeon never writes into an existing file, so the fixture is
                # safe, and a real copy would evict the fixture from the page cache, slowing
                # whichever side runs next.
                shutil.rmtree(model, ignore_errors=True)
                subprocess.run(["cp", "-al", str(fixture), str(model)], check=True)
            times[side].append(measure(commands[side]))
        print(
            f"repeat {r + 1}/{args.repeats}: "
            + ", ".join(f"{k} {v[-1][0]:.2f}s" for k, v in times.items()),
            flush=True,
        )
    labels = json.loads((fixture / "config.json").read_text())["id2label"]
    assert len(labels) == len(LABELS), "the cached fixture was modified"
    med = {
        k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v))
        for k, v in times.items()
    }

    sparse = work / "sparse"
    n = build_sparse(args.sparse_params, sparse)
    sparse_wall, sparse_rss = measure([*cli, str(sparse), "--name", "new"])
    shutil.rmtree(work, ignore_errors=True)

    size = sum(p.stat().st_size for p in fixture.iterdir()) / 1e9
    names = {
        "a": "load-cat-save (transformers)",
        "b": "headsurgeon add-label, in place",
        "c": "headsurgeon add-label -o",
        "d": "headsurgeon add-label -o --link",
        "e": "cp -r",
    }
    print(
        f"\nfixture: {fixture.name}, {size:.2f} GB on disk, shards of {SHARD}; medians of {args.repeats} interleaved runs"
    )
    print(f"{'':34} {'wall s':>8} {'peak RSS MiB':>13}")
    for k in "abcde":
        print(f"{names[k]:34} {med[k][0]:8.2f} {med[k][1]:13.0f}")
    a_t, a_m = med["a"]
    ratios = {
        "in_place_speedup": a_t / med["b"][0],
        "in_place_rss_fraction": med["b"][1] / a_m,
        "out_time_vs_cp": med["c"][0] / med["e"][0],
        "out_rss_fraction": med["c"][1] / a_m,
        "link_speedup": a_t / med["d"][0],
        "link_rss_fraction": med["d"][1] / a_m,
        "sparse_rss_mib": sparse_rss,
    }
    print("\nratios (targets from issue 3):")
    print(
        f"  in place:      {ratios['in_place_speedup']:.1f}x faster than load-cat-save (>= 12x), RSS {ratios['in_place_rss_fraction']:.3f} of it (<= 0.2)"
    )
    print(
        f"  -o:            {ratios['out_time_vs_cp']:.2f}x the time of cp -r (<= 1.5x), RSS {ratios['out_rss_fraction']:.3f} of load-cat-save (<= 0.2)"
    )
    print(
        f"  -o --link:     {ratios['link_speedup']:.1f}x faster than load-cat-save, RSS {ratios['link_rss_fraction']:.3f} of it"
    )
    print(
        f"  {args.sparse_params:g}B-shaped sparse checkpoint ({n / 1e9:.2f}B params) in place: {sparse_wall:.2f}s, peak RSS {sparse_rss:.0f} MiB (< 1024)"
    )
    RESULTS.mkdir(exist_ok=True)
    report = {
        "fixture": fixture.name,
        "repeats": args.repeats,
        "medians": med,
        "ratios": ratios,
        "runs": times,
    }
    (RESULTS / "surgery.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
