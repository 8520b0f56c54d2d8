"""Every classification class of transformers' auto-mappings, built tiny from its default config.

Used by ``tests/test_matrix.py`` (the architecture matrix) and ``python -m tests.zoo`` (a count
report). Nothing here is cached: each call builds a fresh config, model and inputs.

- :func:`entries` lists the classes of the sequence / token / image / audio classification
  mappings (each class once, with the model type that maps to it first).
- :func:`tiny_config` shrinks the class's default config with a generic table of size fields
  (widths, depths, heads, vocab, image and audio sizes, per-stage lists) and names 3 labels.
- :func:`build` instantiates the model (eval mode, seeded), :func:`inputs_for` makes inputs for its
  ``main_input_name``, :func:`logits_of` returns the logits tensor of its outputs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

LABELS = ["alpha", "beta", "gamma"]
MAPPINGS = {
    "sequence": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "token": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "image": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "audio": "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES",
}
BATCH, SEQ, VOCAB, WIDTH, FFN, IMAGE, PATCH, SAMPLES = 2, 8, 99, 32, 48, 32, 4, 1600

# Scalar size fields of configs and their tiny value (applied only when the default is larger).
SCALARS = {
    **dict.fromkeys(
        ["hidden_size", "d_model", "n_embd", "dim", "emb_dim", "embed_dim", "embedding_size"], WIDTH
    ),
    **dict.fromkeys(["word_embed_proj_dim", "output_hidden_size", "pooler_hidden_size"], WIDTH),
    **dict.fromkeys(["pooler_output_size", "true_hidden_size", "intra_bottleneck_size"], WIDTH),
    **dict.fromkeys(
        ["num_attention_heads", "n_head", "n_heads", "num_heads", "encoder_attention_heads"], 2
    ),
    **dict.fromkeys(["decoder_attention_heads", "num_key_value_heads", "num_kv_heads"], 2),
    **dict.fromkeys(["head_dim", "kv_channels", "d_head", "d_kv", "attention_head_dim"], 16),
    **dict.fromkeys(["v_head_dim", "qk_head_dim", "kv_lora_rank", "q_lora_rank"], 16),
    **dict.fromkeys(["qk_rope_head_dim", "qk_nope_head_dim"], 8),
    **dict.fromkeys(["intermediate_size", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim"], FFN),
    **dict.fromkeys(["d_ff", "d_inner", "n_inner", "hidden_dim", "ffn_hidden_size", "dff"], FFN),
    **dict.fromkeys(["moe_intermediate_size", "shared_expert_intermediate_size"], FFN),
    **dict.fromkeys(["num_hidden_layers", "num_layers", "n_layer", "n_layers"], 2),
    **dict.fromkeys(["encoder_layers", "decoder_layers", "num_decoder_layers"], 2),
    **dict.fromkeys(["num_encoder_layers"], 2),
    **dict.fromkeys(["num_experts", "num_local_experts", "n_routed_experts"], 4),
    **dict.fromkeys(["num_experts_per_tok", "moe_topk"], 2),
    **dict.fromkeys(["vocab_size"], VOCAB),
    **dict.fromkeys(["max_position_embeddings", "n_positions", "max_seq_len"], 128),
    **dict.fromkeys(["image_size", "input_size"], IMAGE),
    **dict.fromkeys(["patch_size"], PATCH),
    **dict.fromkeys(["num_conv_pos_embeddings", "classifier_proj_size", "xvector_output_dim"], 16),
    **dict.fromkeys(["codevector_dim", "proj_codevector_dim", "projection_dim"], 16),
    **dict.fromkeys(["num_conv_pos_embedding_groups"], 2),
    **dict.fromkeys(["num_mel_bins"], 16),
    **dict.fromkeys(["max_source_positions"], 16),
    **dict.fromkeys(["max_length"], 32),
}
# Per-stage list fields: every entry set to the tiny value (length kept: other lists match it).
LISTS = {
    "depths": 1,
    "num_heads": 1,
    "num_attention_heads": 1,
    "conv_dim": 16,
    "tdnn_dim": 16,
}
# Per-stage widths: kept growing (some models need a wider stage after a narrower one).
WIDTH_LISTS = ("hidden_sizes", "embed_dims", "embed_dim")
SUBCONFIGS = ("text_config", "vision_config", "audio_config")


@dataclass(frozen=True)
class Entry:
    """One classification class: its name, the model type mapping to it, and its task."""

    name: str
    model_type: str
    task: str

    def __str__(self) -> str:
        return self.name


def entries() -> list[Entry]:
    """Every class of the four classification auto-mappings, once each, sorted by name."""
    from transformers.models.auto import modeling_auto

    seen: dict[str, Entry] = {}
    for task, attr in MAPPINGS.items():
        for model_type, names in getattr(modeling_auto, attr).items():
            for name in (names,) if isinstance(names, str) else names:
                seen.setdefault(name, Entry(name, model_type, task))
    return sorted(seen.values(), key=lambda e: e.name)


def model_class(entry: Entry):
    """The transformers class of ``entry`` (raises ImportError/AttributeError when unavailable)."""
    import transformers

    return getattr(transformers, entry.name)


def _shrunk(values: dict[str, Any]) -> dict[str, Any]:
    """Overrides making the config dict ``values`` tiny."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, bool) or value is None:
            continue
        if key in SUBCONFIGS and isinstance(value, dict):
            out[key] = {**value, **_shrunk(value), **_token_ids(value)}
        elif isinstance(value, int) and key in SCALARS and value > SCALARS[key]:
            out[key] = SCALARS[key]
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
            if key in LISTS:
                out[key] = [LISTS[key]] * len(value)
            elif key in WIDTH_LISTS:
                out[key] = [8 * (i + 1) for i in range(len(value))]
            elif key in ("image_size",):
                out[key] = [IMAGE] * len(value)
            elif key in ("patch_size",):
                out[key] = [PATCH] * len(value)
    return out


def _token_ids(values: dict[str, Any]) -> dict[str, Any]:
    """Special token ids moved inside the tiny vocabulary (0, 1, 2 are kept as they are)."""
    out = {}
    for key, value in values.items():
        if key.endswith("_token_id") and isinstance(value, int) and value >= VOCAB:
            out[key] = 2
        elif key.endswith("_token_id") and isinstance(value, list):
            out[key] = [v if v < VOCAB else 2 for v in value]
    return out


def tiny_config(entry: Entry, names=LABELS):
    """The class's default config shrunk to a tiny size, with ``names`` as labels."""
    from headsurgeon.labels import apply_to_config

    cls = model_class(entry)
    config_cls = cls.config_class
    values = config_cls().to_dict()
    overrides = {**_shrunk(values), **_token_ids(values)}
    if entry.task == "sequence" and values.get("pad_token_id") is None and "pad_token_id" in values:
        overrides["pad_token_id"] = 0  # decoder classifiers pool the last non-pad token
    config = config_cls(**overrides)
    apply_to_config(config, list(names))
    return config


def build(entry: Entry, config=None):
    """Instantiate ``entry``'s class tiny (seeded, eval mode)."""
    import torch

    config = config if config is not None else tiny_config(entry)
    torch.manual_seed(0)
    return model_class(entry)(config).eval()


def _accepts(model) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _size(config, key: str, default: int) -> tuple[int, int]:
    value = getattr(config, key, None) or default
    return (value, value) if isinstance(value, int) else tuple(value)[:2]


def inputs_for(model, seed: int = 0) -> dict[str, Any]:
    """Inputs for ``model``'s ``main_input_name`` (and the extras it needs), deterministic."""
    import torch

    g = torch.Generator().manual_seed(seed)
    config = model.config
    main = model.main_input_name
    accepts = _accepts(model)
    if main in ("input_ids", "inputs") and "pixel_values" not in accepts and _is_text(model):
        vocab = getattr(config, "vocab_size", None) or VOCAB
        ids = torch.randint(3, min(vocab, VOCAB), (BATCH, SEQ), generator=g)
        out = {main: ids}
        if "attention_mask" in accepts:
            out["attention_mask"] = torch.ones_like(ids)
        if "bbox" in accepts:
            corner = torch.randint(0, 500, (BATCH, SEQ, 2), generator=g)
            out["bbox"] = torch.cat([corner, corner + 10], dim=-1)
        return out
    if main in ("pixel_values", "inputs"):
        channels = getattr(config, "num_channels", 3)
        h, w = _size(config, "image_size", IMAGE)
        return {main: torch.randn(BATCH, channels, h, w, generator=g)}
    if main == "input_values":
        return {main: torch.randn(BATCH, SAMPLES, generator=g)}
    if main == "input_features":
        return {main: torch.randn(BATCH, *_feature_shape(config), generator=g)}
    raise NotImplementedError(f"no inputs for main_input_name {main!r}")


def _is_text(model) -> bool:
    return "Image" not in type(model).__name__


def _feature_shape(config) -> tuple[int, int]:
    """(dims after batch) of spectrogram-like ``input_features``."""
    model_type = config.model_type
    if model_type == "whisper":
        return config.num_mel_bins, 2 * config.max_source_positions
    if model_type == "audio-spectrogram-transformer":
        return config.max_length, config.num_mel_bins
    return SEQ * 4, config.feature_size


def logits_of(outputs):
    """The logits tensor of a classification model's outputs."""
    if getattr(outputs, "logits", None) is not None:
        return outputs.logits
    raise KeyError(f"no logits in {type(outputs).__name__}: {list(outputs.keys())}")
