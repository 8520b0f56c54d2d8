"""Audio classifiers through train, check and push: the README pipeline on a tiny wav2vec2.

The promises: a ``Wav2Vec2ForSequenceClassification`` grown by ``add-label`` trains on an
audiofolder of WAVs (clips of several lengths and rates, resampled to the feature extractor's),
its old rows stay bit-identical, it reloads with no missing or unexpected keys, the accuracy
gate judges it (exit 3 on a regression, nothing written), the cached block inputs give the
whole model's logits, and bad input is one ``error:`` line with nothing written. The WAVs are
written by the tests with Python's ``wave``; the parent is trained in a fixture.
"""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from headsurgeon.cli import main
from tests.common import tree_hashes
from tests.test_hub import hub, hub_server  # noqa: F401  (the test Hub's fixtures)

pytest.importorskip("soundfile", reason='soundfile is needed: pip install -e ".[dev]"')

OLD = ["alpha", "beta", "gamma"]
NEW = "delta"
RATE = 16000
#: each label is a tone (clips are it plus noise)
TONES = {"alpha": 300.0, "beta": 900.0, "gamma": 2000.0, "delta": 4500.0}
NO_KEYS = ("missing_keys", "unexpected_keys", "mismatched_keys")


def wav(path, samples, rate: int = RATE):
    """A 16-bit PCM mono WAV written with the standard library."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).round().astype("<i2").tobytes())
    return path


def clips(root, label: str, n: int, seed: int) -> None:
    """``n`` noisy tones of ``label`` of 0.15-0.3 s in ``root/label/`` (the audiofolder
    layout); every third at 8 kHz when the tone is below its Nyquist frequency (resampled
    when read)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        rate = 8000 if i % 3 == 2 and TONES[label] < 4000 else RATE
        t = np.arange(int(rate * rng.uniform(0.15, 0.3))) / rate
        tone = 0.5 * np.sin(2 * np.pi * TONES[label] * t)
        wav(root / label / f"{i}.wav", tone + rng.normal(0, 0.05, len(t)), rate)


def tiny_wav2vec2(labels=OLD, **config):
    import transformers

    config = transformers.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, classifier_proj_size=8, vocab_size=10,
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}, **config,
    )  # fmt: skip
    return transformers.Wav2Vec2ForSequenceClassification(config)


def extractor():
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(sampling_rate=RATE, return_attention_mask=True)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Folders old/ (12 per old label), new/ (6 of delta), test/ (8 per label), a trained
    parent wav2vec2 with its feature extractor, and the parent grown by ``add-label``."""
    from headsurgeon.tasks.audio import AudioCollator, read_audio_examples

    d = tmp_path_factory.mktemp("audio")
    for i, label in enumerate(OLD):
        clips(d / "old", label, 12, i)
    for i, label in enumerate([*OLD, NEW]):
        clips(d / "test", label, 8, 10 + i)
    clips(d / "new", NEW, 6, 20)
    torch.manual_seed(0)
    model = tiny_wav2vec2()
    batch = AudioCollator(extractor(), model.config.label2id)(read_audio_examples(d / "old"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(12):  # 100% on test/
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    model.eval().save_pretrained(d / "w2v")
    extractor().save_pretrained(d / "w2v")
    assert run("add-label", d / "w2v", "--name", NEW, "-o", d / "grown").exit_code == 0
    return d


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def loaded(folder):
    from transformers import AutoModelForAudioClassification

    model, info = AutoModelForAudioClassification.from_pretrained(folder, output_loading_info=True)
    assert not any(info[k] for k in NO_KEYS), info
    return model


@pytest.mark.usefixtures("hub")
def test_the_readme_pipeline_on_an_audio_model(audio, tmp_path):
    """inspect → add-label (fixture) → train → check → push, on audiofolders of WAVs."""
    from huggingface_hub import hf_hub_download

    d, out = audio, tmp_path / "tuned"
    before = tree_hashes(d)
    res = run("inspect", d / "w2v")
    assert "task:         audio classification" in res.output
    assert "train, check, sweep" in res.output
    res = run("train", d / "grown", "--data", d / "new", "--replay", d / "old", "--holdout",
              d / "test", "--device", "cpu", "--max-drop", "100", "-o", out, "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["task"] == "audio-classification" and doc["new_labels"] == [NEW]
    assert doc["block_inputs_cached"] and doc["check"]["n_old_examples"] == 24
    assert doc["check"]["drop_uncertainty"]["n"] == 24
    tuned, parent = loaded(out), loaded(d / "w2v")
    assert torch.equal(tuned.classifier.weight[:3], parent.classifier.weight)
    assert torch.equal(tuned.classifier.bias[:3], parent.classifier.bias)
    assert (out / "preprocessor_config.json").is_file()
    res = run("check", d / "w2v", out, "--holdout", d / "test", "--max-drop", "100")
    assert res.exit_code == 0 and "old-label check PASSED" in res.output, res.output
    res = run("push", out, "--repo", "me/w2v-delta")
    assert res.exit_code == 0, res.output
    card = open(hf_hub_download("me/w2v-delta", "README.md", cache_dir=tmp_path / "c")).read()
    assert "pipeline_tag: audio-classification" in card
    assert tree_hashes(d) == before  # inputs unchanged


def test_a_regression_is_refused_with_exit_3_and_nothing_written(audio, tmp_path):
    d, out = audio, tmp_path / "bad"
    before = tree_hashes(d)
    res = run("train", d / "grown", "--data", d / "new", "--holdout", d / "test", "-o", out,
              "--device", "cpu", "--init", "normal", "--freeze", "none", "--no-protect-old-rows",
              "--lr", "2e-2", "--epochs", "10", "--batch-size", "4")  # fmt: skip
    assert res.exit_code == 3, res.output
    assert "old-label check FAILED" in res.output and f"{out} not written" in res.output
    assert list(tmp_path.iterdir()) == [] and tree_hashes(d) == before


def test_top_blocks_on_cached_inputs_match_the_full_model(audio):
    """Clips of several lengths, batched with padding: their cached block inputs (cut to each
    clip's frames) with silence standing in give the whole model's logits; in training mode
    too, where LayerDrop would skip the block fed from the cache."""
    from headsurgeon.tasks.audio import read_audio_examples
    from headsurgeon.tasks.audio.task import AudioTask
    from headsurgeon.train.blocks import blocks_return_tuples, encoder_blocks
    from headsurgeon.train.features import TopBlocks, block_inputs

    quiet = {"hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
             "feat_proj_dropout": 0.0, "final_dropout": 0.0, "mask_time_prob": 0.0}  # fmt: skip
    model = tiny_wav2vec2(layerdrop=0.9, **quiet).eval()
    task = AudioTask()
    examples = read_audio_examples(audio / "test")[:10]
    view, keys = task.tokenizer(extractor()), [task.key(e) for e in examples]
    assert len(set(view.lengths(keys))) > 3  # clips of several lengths
    with torch.no_grad():
        full = torch.cat([model(**view([k])).logits for k in keys])  # each clip alone
    _, blocks = encoder_blocks(model, ["classifier"])
    for index in range(1, len(blocks) + 1):
        hidden = block_inputs(model, view, keys, blocks, index, batch_size=4)
        rows = [
            {"text": k, "hidden": h, "label": 0, "weight": 1.0}
            for k, h in zip(keys, hidden, strict=True)
        ]
        inputs = task.collator(view, 0)(rows)
        inputs.pop("labels"), inputs.pop("weight")
        top = TopBlocks(model, blocks, index, blocks_return_tuples(model, view, blocks))
        model.train()
        with torch.no_grad():
            cached = top(**inputs).logits
        model.eval()
        top.restore()
        assert model.config.layerdrop == 0.9  # put back
        assert torch.allclose(cached, full, atol=1e-4), index


def _corrupt(d, tmp_path):
    bad = tmp_path / "bad"
    clips(bad, NEW, 2, 0)
    (bad / NEW / "1.wav").write_bytes(b"RIFF\x10\0\0\0WAVEfmt ")  # a cut header
    return d / "grown", bad, "1.wav"


def _text_csv(d, tmp_path):
    (tmp_path / "text.csv").write_text("text,label\nmy card was stolen,delta\n")
    return d / "grown", tmp_path / "text.csv", "looks like text-classification data"


def _no_extractor(d, tmp_path):
    import shutil

    model = shutil.copytree(d / "grown", tmp_path / "noext")
    (model / "preprocessor_config.json").unlink()
    return model, d / "new", "has no preprocessor_config.json"


@pytest.mark.parametrize("bad", [_corrupt, _text_csv, _no_extractor],
                         ids=["corrupt", "text-csv", "no-extractor"])  # fmt: skip
def test_bad_input_is_one_error_line_and_nothing_is_written(audio, tmp_path, bad):
    d = audio
    model, data, says = bad(d, tmp_path)
    before, inputs = tree_hashes(d), tree_hashes(tmp_path)
    res = run("train", model, "--data", data, "--holdout", d / "test", "-o", tmp_path / "out")
    assert res.exit_code == 1, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], res.stderr
    assert tree_hashes(d) == before and tree_hashes(tmp_path) == inputs
    assert not (tmp_path / "out").exists()
