"""Token classification at the level of words: a sentence is a list of words, one tag each.

Every batched pass of headsurgeon (:func:`headsurgeon.predict.eval_batches`, the training
collator, the feature and block-input caches) tokenizes *texts*. A sentence enters those passes
as one key, its words joined by :data:`SEP`, and :class:`WordTokenizer` splits the key again and
tokenizes the words with ``is_split_into_words=True``; so the sequence machinery runs unchanged.
A word's prediction is its first subword's, as in the transformers token-classification
examples; subwords after the first and special tokens are not scored.

Torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import OptionsError

#: joins a sentence's words into the key of its caches (a control character no word holds)
SEP = "\x1f"


def key(words: Sequence[str]) -> str:
    """The cache key of a sentence."""
    return SEP.join(words)


class WordTokenizer:
    """A fast tokenizer that reads keys made by :func:`key` as pre-split words.

    Every other attribute is the wrapped tokenizer's.

    Raises:
        OptionsError: a slow tokenizer (it has no ``word_ids()``).
    """

    def __init__(self, tokenizer):
        if not getattr(tokenizer, "is_fast", False):
            raise OptionsError(
                f"token classification needs a fast tokenizer (word_ids), but "
                f"{type(tokenizer).__name__} is a slow one: save the model with its fast "
                "tokenizer (tokenizer.json), e.g. AutoTokenizer.from_pretrained(..., use_fast=True)"
            )
        self.__dict__["inner"] = tokenizer

    def __call__(self, texts, **kwargs):
        if isinstance(texts, str):
            texts = [texts]
        return self.inner([t.split(SEP) for t in texts], is_split_into_words=True, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def first_subwords(encoding, i: int) -> list[int]:
    """Positions of the first subword of each word of example ``i`` of a batch encoding (words
    cut by truncation have none, so the list may be shorter than the sentence)."""
    positions, last = [], None
    for position, word in enumerate(encoding.word_ids(i)):
        if word is not None and word != last:
            positions.append(position)
        last = word
    return positions


def per_word(values, encoding) -> list:
    """Split ``values[b, t, ...]`` of a batch into one ``[words, ...]`` tensor per example."""
    return [values[i, first_subwords(encoding, i)] for i in range(values.shape[0])]


def word_index(encoding, batch: int, width: int):
    """``[batch, width]``: the word each position scores (its first subword), -1 elsewhere."""
    import torch

    out = torch.full((batch, width), -1, dtype=torch.long)
    for i in range(batch):
        for w, position in enumerate(first_subwords(encoding, i)):
            out[i, position] = w
    return out


def predict_word_logits(model, tokenizer, sentences: Sequence[Sequence[str]], **kwargs) -> list:
    """Per-word logits of a token classifier: one float32 CPU ``[words, labels]`` per sentence.

    Words cut by truncation (``max_length``) get no row. ``kwargs``: those of
    :func:`headsurgeon.predict.eval_batches` (batch_size, max_length, device, progress, desc).
    """
    from ...predict import eval_batches

    words = tokenizer if isinstance(tokenizer, WordTokenizer) else WordTokenizer(tokenizer)
    keys = [key(s) for s in sentences]
    out: list = [None] * len(keys)
    for idx, enc in eval_batches(model, words, keys, **kwargs):
        output = model(**enc)
        logits = (output.logits if hasattr(output, "logits") else output[0]).float().cpu()
        for i, value in zip(idx, per_word(logits, enc), strict=True):
            out[i] = value
    return out


def tags_from_logits(logits_per_sentence, labels: Sequence[str], lengths: Sequence[int]):
    """Tag names per sentence from per-word logits; words with no row (truncated) are ``O``."""
    out = []
    for logits, n in zip(logits_per_sentence, lengths, strict=True):
        tags = [labels[i] for i in logits.argmax(-1).tolist()] if len(logits) else []
        out.append(tags + ["O"] * (n - len(tags)))
    return out
