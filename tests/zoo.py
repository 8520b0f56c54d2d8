"""Every classification class of transformers' auto-mappings, built tiny from its default config.

Used by ``tests/test_matrix.py`` (the architecture matrix; ``python -m tests.test_matrix`` prints
its counts). Nothing here is cached: each call builds a fresh config, model and inputs.

- :func:`entries` lists the classes of the sequence / token / image / audio classification
  mappings (each class once, with the model type that maps to it first).
- :func:`tiny_config` shrinks the class's default config with a generic table of size fields
  (widths, depths, heads, vocab, image and audio sizes, per-stage lists) and names 3 labels; the
  few architectures whose fields are tied by rules of their own are set in :data:`SPECIAL`.
- :func:`build` instantiates the model (eval mode, seeded), :func:`inputs_for` makes inputs for its
  ``main_input_name``, :func:`logits_of` returns the logits tensor of its outputs.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

LABELS = ("alpha", "beta", "gamma")
MAPPINGS = {
    "sequence": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "token": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "image": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "audio": "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES",
}
#: multiple-choice heads score each choice with one output: no labels, refused
MULTIPLE_CHOICE = {"multiple-choice": "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES"}
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
    **dict.fromkeys(["v_head_dim", "kv_lora_rank", "q_lora_rank"], 16),
    # multi-head latent attention: rope part = head_dim, q/k head = nope + rope
    **dict.fromkeys(["qk_rope_head_dim", "qk_nope_head_dim"], 16),
    **dict.fromkeys(["qk_head_dim"], 32),
    **dict.fromkeys(["intermediate_size", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim"], FFN),
    **dict.fromkeys(["d_ff", "d_inner", "n_inner", "hidden_dim", "ffn_hidden_size", "dff"], FFN),
    **dict.fromkeys(["moe_intermediate_size", "shared_expert_intermediate_size"], FFN),
    **dict.fromkeys(["num_hidden_layers", "num_layers", "n_layer", "n_layers"], 2),
    **dict.fromkeys(["encoder_layers", "decoder_layers", "num_decoder_layers"], 2),
    **dict.fromkeys(["num_encoder_layers"], 2),
    **dict.fromkeys(["num_experts", "num_local_experts", "n_routed_experts"], 4),
    **dict.fromkeys(["num_experts_per_tok", "moe_topk"], 2),
    **dict.fromkeys(["n_group", "topk_group"], 1),  # expert groups of DeepSeek-like routers
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
    **dict.fromkeys(["rotary_dim", "linear_key_head_dim", "linear_value_head_dim"], 16),
    **dict.fromkeys(["linear_num_key_heads", "linear_num_value_heads"], 2),
    **dict.fromkeys(["entity_vocab_size", "entity_emb_size", "class_expand"], 32),
    **dict.fromkeys(["num_latents", "d_latents"], 32),  # Perceiver
    **dict.fromkeys(["num_self_attends_per_block", "num_cross_attention_heads"], 1),
    **dict.fromkeys(["num_self_attention_heads", "num_groups"], 2),
    **dict.fromkeys(["attn_layer_period", "expert_layer_period"], 2),  # hybrids: one of each
    **dict.fromkeys(["attn_layer_offset", "expert_layer_offset"], 1),
}
# Fields that default to ``None`` ("derive it") in a few configs but must be set for a tiny model.
FILL_NONE = ("head_dim", "num_key_value_heads", "num_experts_per_tok", "vocab_size")
# A few architectures have constraints between fields that no generic rule knows; each is a fact
# about that model (not about headsurgeon).
SPECIAL: dict[str, dict[str, Any]] = {
    # GPT-Neo: the attention pattern must cover exactly num_layers layers
    "gpt_neo": {"attention_types": [[["global", "local"], 1]]},
    # Zamba shares one transformer block between its hybrid layers: it needs two of them
    "zamba": {
        "num_hidden_layers": 8,
        "layers_block_type": None,
        "attn_layer_period": 4,
        "attn_layer_offset": 2,
    },
    # Cohere Compass's default config has no RoPE parameters for its (full attention) layers
    "cohere_compass_text": {
        "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 10000.0}}
    },
    # LayoutLMv3's layout embedding is 4 coordinate + 2 shape embeddings wide = hidden_size
    "layoutlmv3": {"hidden_size": 48, "coordinate_size": 8, "shape_size": 8},
    # LiLT splits the layout width in 6 after shrinking it by channel_shrink_ratio (4)
    "lilt": {"hidden_size": 48},
    # BROS derives its bbox embedding width as hidden_size // 4 // dim_bbox, which must be even
    "bros": {"hidden_size": 64},
    # LeViT's patch embedding is four stride-2 convs (16 px) whatever patch_size says; its
    # downsampling attention needs widths that are multiples of key_dim
    "levit": {
        "patch_size": 16,
        "image_size": 64,
        "hidden_sizes": [16, 32, 48],
        "key_dim": [8, 8, 8],
        "down_ops": [["Subsample", 8, 2, 4, 2, 2], ["Subsample", 8, 4, 4, 2, 2]],
    },
    # Swin windows must tile every stage's resolution
    "swin": {"image_size": 64, "window_size": 2},
    "donut-swin": {"image_size": 64, "window_size": 2},
    # Hiera's patch conv (7, stride 4, padding 3) and 3 query-pooling stages need 32 px exactly
    "hiera": {"patch_size": [7, 7]},
    # TextNet's stem feeds the first stage: same width
    "textnet": {"stem_out_channels": 8},
    # HGNet-V2: per-stage channel lists must chain; the classifier reads the last stage width
    "hgnet_v2": {
        "embedding_size": 16,
        "stem_channels": [3, 8, 16],
        "stage_in_channels": [16, 16, 32, 48],
        "stage_mid_channels": [8, 8, 16, 16],
        "stage_out_channels": [16, 32, 48, 64],
        "hidden_sizes": [16, 32, 48, 64],
        "stage_num_blocks": [1, 1, 1, 1],
        "stage_numb_of_layers": [1, 1, 1, 1],
    },
    # EfficientNet: the top conv has round_filters(1280) = 1280 * width_coefficient channels
    "efficientnet": {"width_coefficient": 0.25, "depth_coefficient": 0.25, "hidden_dim": 320},
    # MobileViT-V2 unfolds 2x2 patches at output stride 32: at least 64 px
    "mobilevitv2": {"image_size": 64, "width_multiplier": 0.25},
    # MobileNets: thinner through their own width knob
    "mobilenet_v1": {"depth_multiplier": 0.25},
    "mobilenet_v2": {"depth_multiplier": 0.25},
    # CvT indexes each stage's drop-path rates (one per block) by the stage number
    "cvt": {"depth": [1, 2, 3]},
    # Mistral 4 ropes half of each head (partial_rotary_factor 0.5): head_dim = 2 * rope dims
    "mistral4": {"head_dim": 32},
    # Reformer: axial position shape multiplies to the max length, its dims sum to hidden_size
    "reformer": {
        "axial_pos_shape": [4, 8],
        "axial_pos_embds_dim": [16, 16],
        "max_position_embeddings": 32,
        "attention_head_size": 16,
        "feed_forward_size": FFN,
        "local_attn_chunk_length": 4,
        "lsh_attn_chunk_length": 4,
    },
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
WIDTH_LISTS = ("hidden_sizes", "embed_dims", "embed_dim", "neck_hidden_sizes")


@dataclass(frozen=True)
class Entry:
    """One classification class: its name, the model type mapping to it, and its task."""

    name: str
    model_type: str
    task: str

    def __str__(self) -> str:
        return self.name


def entries(mappings: dict[str, str] = MAPPINGS) -> list[Entry]:
    """Every class of the (four classification) auto-mappings, once each, sorted by name."""
    from transformers.models.auto import modeling_auto

    seen: dict[str, Entry] = {}
    for task, attr in mappings.items():
        for model_type, names in getattr(modeling_auto, attr).items():
            for name in (names,) if isinstance(names, str) else names:
                seen.setdefault(name, Entry(name, model_type, task))
    return sorted(seen.values(), key=lambda e: e.name)


def model_class(entry: Entry):
    """The transformers class of ``entry`` (raises ImportError/AttributeError when unavailable)."""
    import transformers

    return getattr(transformers, entry.name)


def _shrunk(values: dict[str, Any]) -> dict[str, Any]:
    """Overrides making the config dict ``values`` tiny (sub-configs too)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None and key in FILL_NONE:
            out[key] = SCALARS[key]
        if value is None and key == "pad_token_id":  # classifiers pool the last non-pad token
            out[key] = 0
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, dict) and "model_type" in value:  # a sub-config
            out[key] = {"model_type": value["model_type"], **_shrunk(value), **_token_ids(value)}
        elif isinstance(value, int) and key in SCALARS and value > SCALARS[key]:
            out[key] = SCALARS[key]
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
            if key in LISTS:
                out[key] = [LISTS[key]] * len(value)
            elif key in WIDTH_LISTS:
                out[key] = [8 * (i + 1) for i in range(len(value))]
            elif key in ("image_size",):
                out[key] = [IMAGE] * len(value)
    out.update(_layer_pattern(values, out))
    out.update(SPECIAL.get(values.get("model_type"), {}))
    return out


def _layer_pattern(values: dict[str, Any], shrunk: dict[str, Any]) -> dict[str, Any]:
    """Per-layer type lists (``layer_types``, ``attn_layers``...) cut to the tiny layer count.

    Keeps one layer of each distinct type (in order of first appearance) so that hybrids keep an
    attention layer, and raises the layer count to match when there are more types than layers.
    """
    count_keys = [k for k in ("num_hidden_layers", "num_layers", "n_layer") if k in shrunk]
    if not count_keys:
        return {}
    old = values[count_keys[0]]
    out: dict[str, Any] = {}
    for key, value in values.items():
        if (
            isinstance(value, list)
            and len(value) == old
            and value
            and all(isinstance(v, str) for v in value)
        ):
            kinds = list(dict.fromkeys(value))
            if len(kinds) == 1:  # a uniform pattern: the config derives it from the count
                continue
            size = max(shrunk[count_keys[0]], len(kinds))
            out[key] = (kinds * size)[:size]
            out.update(dict.fromkeys(count_keys, size))
            if "hybrid_layer_ids" in values:  # Zamba2 lists the hybrid layers by index
                out["hybrid_layer_ids"] = [i for i, k in enumerate(out[key]) if k == "hybrid"]
    return out


def _token_ids(values: dict[str, Any]) -> dict[str, Any]:
    """Special token ids moved inside the tiny vocabulary (0, 1, 2 are kept as they are)."""
    out = {}
    for key, value in values.items():
        if (
            key.endswith(("_token_id", "_token_index"))
            and isinstance(value, int)
            and value >= VOCAB
        ):
            out[key] = 2
        elif key.endswith("_token_id") and isinstance(value, list):
            out[key] = [v if v < VOCAB else 2 for v in value]
    return out


def tiny_config(entry: Entry, names=LABELS, *, by_count: bool = False):
    """The class's default config shrunk to a tiny size, with ``names`` as labels.

    With ``by_count``, the config is built with ``num_labels=len(names)`` and no label names,
    as a user writing ``XConfig(num_labels=3)`` would.
    """
    from headsurgeon.labels import apply_to_config

    cls = model_class(entry)
    config_cls = cls.config_class
    values = config_cls().to_dict()
    # deep copy: configs keep the lists they are given, and SPECIAL's must stay as written
    overrides = copy.deepcopy({**_shrunk(values), **_token_ids(values)})
    if by_count:
        overrides["num_labels"] = len(names)
    config = config_cls(**overrides)
    if config.is_encoder_decoder and getattr(config, "decoder_start_token_id", None) is None:
        config.decoder_start_token_id = 0  # T5's sequence classifier shifts inputs right with it
    if not by_count:
        apply_to_config(config, list(names))
    return config


def count_field_configs() -> list[str]:
    """Every config class transformers exports whose ``num_labels`` is a field of its own.

    ``PretrainedConfig.num_labels`` is a property derived from ``id2label``; a class that
    defines ``num_labels`` itself keeps the count apart from the names (imports every config).
    """
    import transformers

    found = []
    for name in dir(transformers):
        cls = getattr(transformers, name) if name.endswith("Config") else None
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedConfig):
            if not isinstance(inspect.getattr_static(cls, "num_labels", None), property):
                found.append(name)
    return sorted(found)


def entries_of_configs(config_names) -> list[Entry]:
    """The classification entries whose model type maps to one of ``config_names``."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return [e for e in entries() if CONFIG_MAPPING_NAMES.get(e.model_type) in set(config_names)]


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
    if main == "input_ids" or (main == "inputs" and "Image" not in type(model).__name__):
        out = _text_inputs(model, main, accepts, g)
    elif "spatial_shapes" in accepts:  # NaFlex (Siglip2): pre-cut patches + their grid
        patch = getattr(config, "vision_config", config).patch_size
        side = IMAGE // patch
        patches = torch.randn(BATCH, side * side, 3 * patch**2, generator=g)
        out = {
            main: patches,
            "pixel_attention_mask": torch.ones(BATCH, side * side, dtype=torch.long),
            "spatial_shapes": torch.tensor([[side, side]] * BATCH),
        }
    elif main in ("pixel_values", "inputs"):
        channels = getattr(config, "num_channels", 3)
        h, w = _size(config, "image_size", IMAGE)
        out = {main: torch.randn(BATCH, channels, h, w, generator=g)}
    elif main in ("input_values", "input_features"):
        out = {main: torch.randn(BATCH, *_audio_shape(config, main), generator=g)}
    else:
        raise NotImplementedError(f"no inputs for main_input_name {main!r}")
    if "lang_ids" in accepts:  # X-MOD routes through one language adapter per example
        out["lang_ids"] = torch.zeros(BATCH, dtype=torch.long)
    return out


def _text_inputs(model, main: str, accepts: set[str], g) -> dict[str, Any]:
    import torch

    config = model.config
    vocab = min(getattr(config, "vocab_size", None) or VOCAB, VOCAB)
    ids = torch.randint(3, vocab, (BATCH, SEQ), generator=g)
    eos = getattr(config, "eos_token_id", None)
    if config.is_encoder_decoder and isinstance(eos, int):
        ids[:, -1] = eos  # BART-like classifiers pool the hidden state at the <eos> token
    out = {main: ids}
    if "attention_mask" in accepts:
        out["attention_mask"] = torch.ones_like(ids)
    if "bbox" in accepts:
        corner = torch.randint(0, 500, (BATCH, SEQ, 2), generator=g)
        out["bbox"] = torch.cat([corner, corner + 10], dim=-1)
    return out


def _audio_shape(config, main: str) -> tuple[int, ...]:
    """Shape (after batch) of ``input_values`` / ``input_features``."""
    model_type = config.model_type
    if model_type == "whisper":  # (mel bins, frames): the encoder wants 2 * max_source_positions
        return config.num_mel_bins, 2 * config.max_source_positions
    if model_type == "audio-spectrogram-transformer":  # (frames, mel bins)
        return config.max_length, config.num_mel_bins
    if main == "input_values":  # raw waveform
        return (SAMPLES,)
    width = getattr(config, "feature_size", None) or config.feature_projection_input_dim
    return SEQ * 4, width


def logits_of(outputs):
    """The logits tensor of a classification model's outputs."""
    if getattr(outputs, "logits", None) is not None:
        return outputs.logits
    # PP-LCNet's classifier returns its logits as ``last_hidden_state``
    if getattr(outputs, "last_hidden_state", None) is not None:
        return outputs.last_hidden_state
    raise KeyError(f"no logits in {type(outputs).__name__}: {list(outputs.keys())}")
