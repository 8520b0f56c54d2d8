"""Audio classification data (headsurgeon.tasks.audio): readers, decoding, resampling, batches.

WAV fixtures are written with Python's ``wave`` module (16-bit PCM), a FLAC with soundfile;
the models are a tiny Wav2Vec2ForSequenceClassification and a tiny ASTForAudioClassification,
saved with their feature extractors like a user's folders.
"""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from headsurgeon.data import check_labels
from headsurgeon.errors import CheckpointError, DataError, OptionsError
from headsurgeon.tasks.audio import (
    AudioCollator,
    label_ids,
    load_feature_extractor,
    probe_audio,
    read_audio_examples,
    read_waveform,
    resample,
)
from tests.common import LABELS, label_kwargs, tree_hashes

RATE = 16000


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


def write_wav(path: Path, channels: list[np.ndarray] | np.ndarray, rate: int = RATE) -> Path:
    """A 16-bit PCM WAV (one array per channel) written with the standard library."""
    data = np.stack(channels if isinstance(channels, list) else [channels], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(data, -1, 1) * 32767).round().astype("<i2").tobytes())
    return path


def clip(path: Path, freq: float = 440.0, rate: int = RATE, seconds: float = 0.25) -> Path:
    return write_wav(path, sine(freq, rate, seconds), rate)


def peak_hz(wave_: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave_))
    return float(np.fft.rfftfreq(len(wave_), 1 / rate)[spectrum.argmax()])


@pytest.fixture(scope="module")
def w2v_folder(tmp_path_factory):
    """A tiny wav2vec2 audio classifier (alpha/beta/gamma) with its feature extractor."""
    import transformers

    cfg = transformers.Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=8,
        vocab_size=10,
        **label_kwargs(),
    )
    path = tmp_path_factory.mktemp("audio") / "w2v"
    transformers.Wav2Vec2ForSequenceClassification(cfg).save_pretrained(path)
    transformers.Wav2Vec2FeatureExtractor(
        sampling_rate=RATE, return_attention_mask=True
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ast_folder(tmp_path_factory):
    """A tiny AST audio classifier (16 mel bins, 32 frames) with its feature extractor."""
    import transformers

    cfg = transformers.ASTConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_mel_bins=16,
        max_length=32,
        frequency_stride=10,
        time_stride=10,
        **label_kwargs(),
    )
    path = tmp_path_factory.mktemp("audio") / "ast"
    transformers.ASTForAudioClassification(cfg).save_pretrained(path)
    transformers.ASTFeatureExtractor(num_mel_bins=16, max_length=32).save_pretrained(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """An audiofolder: alpha (two WAVs at 16 kHz and 8 kHz), beta (a stereo 44.1 kHz FLAC),
    plus a text file and a hidden file that are not data."""
    import soundfile as sf

    root = tmp_path / "clips"
    clip(root / "alpha" / "a1.wav")
    clip(root / "alpha" / "a2.wav", 660, rate=8000, seconds=0.5)
    (root / "beta").mkdir()
    stereo = np.stack([sine(440, 44100, 0.3), sine(440, 44100, 0.3, 0.1)], axis=1)
    sf.write(root / "beta" / "b1.flac", stereo, 44100)
    (root / "README.txt").write_text("recorded in the lab")
    (root / "alpha" / ".a1.wav.swp").write_bytes(b"\0")
    return root


# --- readers ---------------------------------------------------------------------------------


def test_audiofolder_labels_come_from_folder_names(folder):
    examples = read_audio_examples(folder)
    assert [(e.path.relative_to(folder).as_posix(), e.label) for e in examples] == [
        ("alpha/a1.wav", "alpha"),
        ("alpha/a2.wav", "alpha"),
        ("beta/b1.flac", "beta"),
    ]
    assert all(e.line is None and e.where == str(e.path) for e in examples)


def test_audiofolder_with_a_split_level_and_one_label(tmp_path):
    clip(tmp_path / "data" / "train" / "delta" / "x.wav")
    clip(tmp_path / "data" / "train" / "delta" / "y.wav")
    assert [e.label for e in read_audio_examples(tmp_path / "data")] == ["delta", "delta"]


def test_audiofolder_refuses_files_without_a_label_folder(tmp_path):
    clip(tmp_path / "top" / "loose.wav")
    clip(tmp_path / "top" / "alpha" / "ok.wav")
    before = tree_hashes(tmp_path)
    with pytest.raises(DataError, match=r"loose\.wav: an audio file directly in .*<label>"):
        read_audio_examples(tmp_path / "top")
    clip(tmp_path / "mixed" / "alpha" / "a.wav")
    clip(tmp_path / "mixed" / "beta" / "deeper" / "b.wav")
    with pytest.raises(DataError, match="different depths"):
        read_audio_examples(tmp_path / "mixed")
    assert tree_hashes(tmp_path / "top") == {k[4:]: v for k, v in before.items()}


def test_metadata_csv_lists_files_relative_to_itself(tmp_path, caplog):
    root = tmp_path / "meta"
    clip(root / "part1" / "x.wav")
    clip(root / "part1" / "sub" / "y.wav")
    clip(root / "part1" / "unlisted.wav")
    (root / "part1" / "metadata.csv").write_text(
        "file_name,category,transcription\nx.wav,alpha,hello\nsub/y.wav,7,world\n"
    )
    with caplog.at_level("WARNING"):
        examples = read_audio_examples(root, label_column="category")
    assert [(e.path.name, e.label, e.line) for e in examples] == [
        ("x.wav", "alpha", 2),
        ("y.wav", "7", 3),
    ]
    assert examples[1].where == f"{root / 'part1' / 'metadata.csv'}:3"
    assert "1 audio file(s) not listed" in caplog.text
    with pytest.raises(DataError, match=r"metadata\.csv:1: no column 'label'.*'file_name'"):
        read_audio_examples(root)


def test_metadata_jsonl_and_a_mix_of_formats(tmp_path):
    root = tmp_path / "meta"
    clip(root / "a.wav")
    rows = [{"file_name": "a.wav", "label": "beta"}, {"file_name": "gone.wav", "label": "beta"}]
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"metadata\.jsonl:2: audio file not found: .*gone\.wav"):
        read_audio_examples(root)
    (root / "metadata.jsonl").write_text(json.dumps(rows[0]) + "\n")
    assert [(e.label, e.line) for e in read_audio_examples(root)] == [("beta", 1)]
    (root / "more").mkdir()
    (root / "more" / "metadata.csv").write_text("file_name,label\n")
    with pytest.raises(DataError, match="both metadata.csv and metadata.jsonl"):
        read_audio_examples(root)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_data_files_with_an_audio_column_relative_to_the_file(tmp_path, suffix, monkeypatch):
    clip(tmp_path / "sounds" / "one.wav")
    clip(tmp_path / "sounds" / "two.wav")
    data = tmp_path / "lists" / f"train{suffix}"
    data.parent.mkdir()
    rows = [("../sounds/one.wav", "alpha"), (str(tmp_path / "sounds" / "two.wav"), "gamma")]
    if suffix == ".jsonl":
        data.write_text("".join(json.dumps({"path": a, "y": b}) + "\n" for a, b in rows))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        data.write_text("".join(f"{a}{sep}{b}\n" for a, b in [("path", "y"), *rows]))
    monkeypatch.chdir(tmp_path / "sounds")  # paths are relative to the data file, not the cwd
    examples = read_audio_examples(data, audio_column="path", label_column="y")
    assert [(e.path.resolve().name, e.label) for e in examples] == [
        ("one.wav", "alpha"),
        ("two.wav", "gamma"),
    ]
    assert [e.where for e in examples] == (
        [f"{data}:1", f"{data}:2"] if suffix == ".jsonl" else [f"{data}:2", f"{data}:3"]
    )


def test_bad_rows_name_the_file_and_line_and_nothing_is_written(tmp_path):
    clip(tmp_path / "ok.wav")
    cases = {
        "missing.csv": ("audio,label\nok.wav,alpha\nnope.wav,beta\n", r"missing\.csv:3: audio file not found: .*nope\.wav"),
        "empty.csv": ("audio,label\nok.wav,alpha\n,beta\n", r"empty\.csv:3: 'audio' is empty"),
        "nolabel.csv": ("audio,label\nok.wav,\n", r"nolabel\.csv:2: empty 'label'"),
        "dir.csv": ("audio,label\n.,alpha\n", r"dir\.csv:2: audio file is a folder"),
        "number.jsonl": ('{"audio": 3, "label": "alpha"}\n', r"number\.jsonl:1: 'audio' is a int"),
        "nothing.csv": ("audio,label\n", r"nothing\.csv holds no examples"),
    }  # fmt: skip
    for name, (text, _) in cases.items():
        (tmp_path / name).write_text(text)
    before = tree_hashes(tmp_path)
    for name, (_, message) in cases.items():
        with pytest.raises(DataError, match=message):
            read_audio_examples(tmp_path / name)
    with pytest.raises(DataError, match="data not found"):
        read_audio_examples(tmp_path / "absent.csv")
    assert tree_hashes(tmp_path) == before


def test_another_tasks_data_says_what_an_audio_model_reads(tmp_path):
    (tmp_path / "text.csv").write_text("text,label\nmy card was stolen,alpha\n")
    (tmp_path / "ner.conll").write_text("EU B-ORG\nrejects O\n")
    (tmp_path / "ner.jsonl").write_text('{"tokens": ["EU"], "tags": ["B-ORG"]}\n')
    (tmp_path / "images" / "alpha").mkdir(parents=True)
    (tmp_path / "images" / "alpha" / "cat.png").write_bytes(b"\x89PNG")
    clip(tmp_path / "one.wav")
    before = tree_hashes(tmp_path)
    expected = "an audio classifier reads labelled audio files"
    for name, message in [
        ("text.csv", r"text\.csv:1: no column 'audio' .*text-classification data"),
        ("ner.conll", r"unknown format '\.conll'"),
        ("ner.jsonl", r"ner\.jsonl:1: no column 'audio' .*token-classification"),
        ("images", r"no audio file .*found 1 other file\(s\): \.png"),
        ("one.wav", r"one\.wav is an audio file, not a list of them"),
    ]:
        with pytest.raises(DataError, match=message) as e:
            read_audio_examples(tmp_path / name)
        assert expected in str(e.value), name
    assert tree_hashes(tmp_path) == before


def test_labels_are_validated_against_the_models(folder):
    examples = read_audio_examples(folder)
    check_labels(examples, LABELS)
    with pytest.raises(DataError, match=r"'beta' \(1 example\)"):
        check_labels(examples, ["alpha", "gamma"])
    with pytest.raises(DataError, match=r"b1\.flac: label 'beta' is not one of the model's"):
        label_ids(examples, {"alpha": 0})
    assert label_ids(examples, {"alpha": 0, "beta": 2}).tolist() == [0, 0, 2]


# --- decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 44100])
def test_resampling_to_the_extractor_rate_keeps_a_sines_frequency(tmp_path, rate):
    path = write_wav(tmp_path / "tone.wav", sine(440, rate, 1.0), rate)
    out = read_waveform(path, RATE)
    assert out.dtype == np.float32 and out.shape == (RATE,)
    assert peak_hz(out, RATE) == 440.0
    reference = sine(440, RATE, 1.0)
    assert np.abs(out - reference)[200:-200].max() < 2e-3  # away from the edges' filter ramp


def test_resampling_filters_what_the_new_rate_cannot_hold():
    """A 10 kHz tone cannot exist at 16 kHz (Nyquist 8 kHz): the polyphase low-pass removes it,
    where linear interpolation would fold it to a loud 6 kHz."""
    tone = sine(10000, 44100, 1.0).astype(np.float32)
    out = resample(tone, 44100, RATE)
    assert np.sqrt(np.mean(out[200:-200] ** 2)) < 0.01 * np.sqrt(np.mean(tone**2))
    assert resample(tone, 44100, 44100) is not None
    with pytest.raises(OptionsError, match="positive integer"):
        resample(tone, 0, RATE)


def test_stereo_is_mixed_down_to_mono(tmp_path):
    left, right = sine(440, RATE, 0.5), sine(440, RATE, 0.5, 0.1)
    out = read_waveform(write_wav(tmp_path / "st.wav", [left, right]), RATE)
    assert out.shape == (RATE // 2,)
    assert np.abs(out - (left + right) / 2).max() < 1e-4  # 16-bit quantisation


def test_max_seconds_truncates_while_reading(tmp_path):
    path = write_wav(tmp_path / "long.wav", sine(440, 8000, 3.0), 8000)
    assert read_waveform(path, RATE, max_seconds=1.0).shape == (RATE,)
    assert read_waveform(path, RATE, max_seconds=None).shape == (3 * RATE,)
    for bad in (0, -1.0, float("nan"), "2"):
        with pytest.raises(OptionsError, match="max_seconds must be a positive number"):
            read_waveform(path, RATE, max_seconds=bad)
    with pytest.raises(OptionsError):
        AudioCollator(object(), max_seconds=0)


def test_corrupt_empty_and_missing_files_name_the_file_and_line(tmp_path):
    (tmp_path / "noise.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    write_wav(tmp_path / "empty.wav", np.zeros(0))
    (tmp_path / "data.csv").write_text("audio,label\nnoise.wav,alpha\nempty.wav,beta\n")
    examples = read_audio_examples(tmp_path / "data.csv")
    before = tree_hashes(tmp_path)
    with pytest.raises(DataError, match=r"data\.csv:2: cannot read the audio file .*noise\.wav"):
        probe_audio(examples)
    with pytest.raises(DataError, match=r"data\.csv:2: cannot read the audio file .*noise\.wav"):
        read_waveform(examples[0].path, RATE, where=examples[0].where)
    with pytest.raises(DataError, match=r"data\.csv:3: the audio file .*empty\.wav holds no"):
        probe_audio(examples[1:])
    with pytest.raises(DataError, match=r"data\.csv:3: the audio file .*empty\.wav holds no"):
        read_waveform(examples[1].path, RATE, where=examples[1].where)
    import soundfile as sf

    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.5]), RATE, subtype="FLOAT")
    with pytest.raises(DataError, match=r"nan\.wav holds NaN or infinite samples"):
        read_waveform(tmp_path / "nan.wav", RATE)
    before["nan.wav"] = tree_hashes(tmp_path)["nan.wav"]
    (tmp_path / "noise.wav").unlink()  # gone between reading the list and decoding
    with pytest.raises(DataError, match=r"data\.csv:2: cannot read the audio file .*noise\.wav"):
        probe_audio(examples)
    before.pop("noise.wav")
    assert tree_hashes(tmp_path) == before


def test_without_soundfile_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    path = clip(tmp_path / "a.wav")
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile -> ImportError
    with pytest.raises(DataError, match=r'pip install "headsurgeon\[audio\]"'):
        read_waveform(path, RATE)


def test_importing_the_package_loads_nothing_heavy():
    code = (
        "import sys, headsurgeon.tasks.audio; "
        "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'soundfile', 'scipy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- feature extractor and batches -----------------------------------------------------------


def test_a_model_folder_without_an_extractor_says_how_to_add_one(w2v_folder, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(w2v_folder, bare)
    (bare / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match=r"no preprocessor_config\.json.*save_pretrained"):
        load_feature_extractor(bare)
    config = json.loads((bare / "config.json").read_text())
    config["_name_or_path"] = "superb/wav2vec2-base-superb-ks"  # the parent, as the Hub names it
    (bare / "config.json").write_text(json.dumps(config))
    before = tree_hashes(bare)
    with pytest.raises(CheckpointError, match=r"from_pretrained\('superb/wav2vec2-base-superb-ks'"):
        load_feature_extractor(bare)
    (bare / "preprocessor_config.json").write_text('{"feature_extractor_type": "Wav2Vec')
    with pytest.raises(CheckpointError, match=r"preprocessor_config\.json: cannot load"):
        load_feature_extractor(bare)
    assert set(tree_hashes(bare)) == set(before) | {"preprocessor_config.json"}


def test_wav2vec2_batch_padded_with_a_mask_gives_logits(w2v_folder, folder):
    import transformers

    extractor = load_feature_extractor(w2v_folder)
    model = transformers.Wav2Vec2ForSequenceClassification.from_pretrained(w2v_folder).eval()
    examples = read_audio_examples(folder)  # 0.25 s at 16 kHz, 0.5 s at 8 kHz, 0.3 s at 44.1 kHz
    batch = AudioCollator(extractor, model.config.label2id)(examples)
    assert set(batch) == {"input_values", "attention_mask", "labels"}
    assert batch["input_values"].shape == (3, 8000)
    assert batch["attention_mask"].sum(1).tolist() == [4000, 8000, 4800]
    assert batch["labels"].tolist() == [0, 0, 1]
    assert peak_hz(batch["input_values"][1].numpy(), RATE) == 660.0
    import torch

    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (3, 3) and torch.isfinite(out.loss)


def test_an_extractor_without_a_mask_pads_only(w2v_folder, folder):
    import transformers

    extractor = transformers.Wav2Vec2FeatureExtractor(sampling_rate=RATE)
    batch = AudioCollator(extractor, max_seconds=0.1)(read_audio_examples(folder))
    assert set(batch) == {"input_values"} and batch["input_values"].shape == (3, 1600)


def test_ast_batch_gives_logits(ast_folder, folder):
    import torch
    import transformers

    extractor = load_feature_extractor(ast_folder)
    model = transformers.ASTForAudioClassification.from_pretrained(ast_folder).eval()
    batch = AudioCollator(extractor, model.config.label2id)(read_audio_examples(folder))
    assert batch["input_values"].shape == (3, 32, 16)
    with torch.no_grad():
        assert model(**batch).logits.shape == (3, 3)
