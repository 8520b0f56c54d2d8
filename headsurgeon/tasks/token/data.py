"""Read token-classification (NER) files into sentences, and align words with subwords.

No torch; transformers only inside :func:`align`. Three formats:

* **CoNLL** (``.conll``, ``.txt``, ``.tsv``, ``.iob``, ``.bio``): one token per line, its tag in
  the LAST column (``token<TAB>tag``, ``token tag``, or CoNLL-2003's ``token POS chunk tag``),
  a blank line between sentences; ``-DOCSTART-`` lines are ignored.
* **JSONL** (``.jsonl``, ``.json``), one sentence per line, either ``{"tokens": [...], "tags":
  [...]}`` (``ner_tags`` also, as tag names) or ``{"text": "...", "entities": [[start, end,
  type], ...]}`` with character offsets (end exclusive), as annotation tools export them (the
  key ``label`` also; a span may be ``{"start": .., "end": .., "label": ..}``). Offsets count
  characters (code points, as Python indexes a ``str``); whitespace at a span's edges is
  dropped. Such a text is split into words by :func:`split_words`; each span must start and
  end on word boundaries.

With the model's tags (``labels``), :func:`read_sentences` checks that every entity type is
one the model has and rewrites the tags in the model's scheme (:mod:`.schemes`):
IOB1 data (``I-X`` opening an entity), BIO data for a BIOES model, ``B_X`` for ``B-X``...
Errors are :class:`DataError` with one line naming the file and line, as :mod:`headsurgeon.data`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ...data import _columns
from ...errors import DataError, LabelError, OptionsError, UnsupportedModelError
from ...labels import check_name
from .schemes import OUTSIDE, Scheme, detect, spans

logger = logging.getLogger(__name__)

log = logging.getLogger(__name__)

CONLL_SUFFIXES = (".conll", ".txt", ".tsv", ".iob", ".bio")
JSONL_SUFFIXES = (".jsonl", ".json")
FORMATS = ("auto", "conll", "jsonl")
DOCSTART = "-DOCSTART-"
#: the label id the loss ignores (subwords after a word's first, special tokens)
IGNORE = -100
#: a tag of any scheme as data may write it: prefix letter, separator, entity type
_ANY_TAG = re.compile(r"([BIESLU])([-_])(.+)")
_WORD = re.compile(r"\w+|[^\w\s]")
_TAGS_KEYS = ("tags", "ner_tags")
_SPANS_KEYS = ("entities", "label")


@dataclass(frozen=True)
class Sentence:
    """One tagged sentence.

    Attributes:
        tokens: the words, as in the file (or as :func:`split_words` cut a text).
        tags: one tag per token.
        source: the file it was read from (``data``: held in memory).
        line: the file line of its first token (CoNLL) or of the sentence (JSONL); in memory
            its row's number (0: not known).
        per_token_lines: True when token ``k`` sits on line ``line + k`` (CoNLL).

    Example:
        >>> Sentence(("Ada", "Lovelace", "wrote"), ("B-PER", "I-PER", "O"))
    """

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    source: str = "data"
    line: int = 0
    per_token_lines: bool = False

    def where(self, k: int = 0) -> str:
        """``FILE:LINE`` of token ``k`` (JSONL: of the sentence, and which token)."""
        if self.per_token_lines:
            return f"{self.source}:{self.line + k}"
        return f"{self.source}:{self.line}: token {k + 1}"


# --- reading ------------------------------------------------------------------------------


def read_sentences(
    path: str | os.PathLike, *, labels: Sequence[str] | None = None, fmt: str = "auto"
) -> list[Sentence]:
    """Read tagged sentences from a CoNLL or JSONL file (see the module's docstring).

    Args:
        path: the file; with ``fmt="auto"`` its suffix chooses the format.
        labels: the model's tags (``id2label`` in id order). Given, every tag's entity type
            must be one the model has, and the tags are rewritten in the model's scheme
            (:func:`to_scheme`). Without it the tags are returned as written.
        fmt: ``"auto"``, ``"conll"`` or ``"jsonl"``.

    Returns:
        the sentences in file order.

    Raises:
        DataError: missing or unreadable file, unknown suffix, a malformed line, an entity span
            out of range / overlapping / not on word boundaries, a tag the model cannot take,
            or no sentence at all. The message names the file and line.

    Example:
        >>> read_sentences("product.conll", labels=["O", "B-PER", "I-PER"])[0]
        Sentence(tokens=('John', 'lives'), tags=('B-PER', 'O'), source='product.conll', line=1, ...)
    """
    path = Path(path)
    kind = _format_of(path, fmt)
    try:
        sentences = list(_conll(path) if kind == "conll" else _jsonl(path))
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    if not sentences:
        raise DataError(f"{path} holds no sentences")
    return sentences if labels is None else to_scheme(sentences, labels)


def _format_of(path: Path, fmt: str) -> str:
    if fmt not in FORMATS:
        raise OptionsError(f"data format {fmt!r} is not one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in CONLL_SUFFIXES:
        return "conll"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise DataError(
        f"{path}: unknown format {suffix or '(no suffix)'!r} for token data; expected CoNLL "
        f"({', '.join(CONLL_SUFFIXES)}) or JSONL ({', '.join(JSONL_SUFFIXES)})"
    )


def _conll(path: Path) -> Iterator[Sentence]:
    tokens: list[str] = []
    tags: list[str] = []
    first = 0
    with path.open(encoding="utf-8-sig") as fh:
        for line_num, line in enumerate(fh, 1):
            fields = _fields(line)
            if not fields or fields[0] == DOCSTART:
                if tokens:
                    yield Sentence(tuple(tokens), tuple(tags), str(path), first, True)
                tokens, tags = [], []
                continue
            if len(fields) < 2:
                raise DataError(
                    f"{path}:{line_num}: found one column ({_shown(fields[0])}), expected a token "
                    "and its tag separated by a tab or spaces (the tag last); put a blank line "
                    "between sentences"
                )
            if not fields[0]:
                raise DataError(
                    f"{path}:{line_num}: the token before the tab is empty; expected token<TAB>tag"
                )
            if not tokens:
                first = line_num
            tokens.append(fields[0])
            tags.append(_tag_name(fields[-1], f"{path}:{line_num}"))
    if tokens:
        yield Sentence(tuple(tokens), tuple(tags), str(path), first, True)


def _fields(line: str) -> list[str]:
    """A CoNLL line's columns: with a tab, the token is what comes before the first one (it
    may hold a space) and the rest splits on whitespace; else all splits on whitespace."""
    if not line.strip():
        return []
    if "\t" in line:
        token, rest = line.split("\t", 1)
        return [token.strip(), *rest.split()]
    return line.split()


def _jsonl(path: Path) -> Iterator[Sentence]:
    with path.open(encoding="utf-8-sig") as fh:
        for line_num, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_num}"
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
                hint = (
                    "; the file must hold one JSON object per line (JSONL)" if line_num == 1 else ""
                )
                raise DataError(f"{where}: not a JSON object: {_one_line(e)}{hint}") from e
            if not isinstance(row, dict):
                raise DataError(
                    f"{where}: expected a JSON object per line (JSONL), found {type(row).__name__}"
                )
            if "tokens" in row:
                tokens, tags = _tokens_row(row, where)
            elif "text" in row and ("entities" in row or isinstance(row.get("label"), list)):
                tokens, tags = _text_row(row, where)
            else:
                raise DataError(f"{where}: {_no_keys(row)}")
            yield Sentence(tokens, tags, str(path), line_num)


def _no_keys(row: dict) -> str:
    found = f"found keys: {_columns(row) or 'none'}"
    if "text" in row and isinstance(row.get("label"), (str, int, float)):
        found = "found 'text' and one 'label': sequence-classification data, not token data"
    return (
        f"expected 'tokens' with 'tags' (or 'ner_tags'), or 'text' with 'entities' (or "
        f"'label') as character spans; {found}"
    )


def _tokens_row(row: dict, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    key = next((k for k in _TAGS_KEYS if k in row), None)
    if key is None:
        raise DataError(
            f"{where}: 'tokens' without 'tags' (or 'ner_tags'); found keys: {_columns(row)}"
        )
    tokens, tags = row["tokens"], row[key]
    if not isinstance(tokens, list) or not tokens:
        raise DataError(
            f"{where}: 'tokens' must be a non-empty list of words, found {_kind(tokens)}"
        )
    if not isinstance(tags, list) or len(tags) != len(tokens):
        found = f"{len(tags)} tags" if isinstance(tags, list) else _kind(tags)
        raise DataError(
            f"{where}: {key!r} must be a list of one tag per token ({len(tokens)}), found {found}"
        )
    for k, token in enumerate(tokens):
        if not isinstance(token, str) or not token.strip():
            raise DataError(f"{where}: token {k + 1} is {_kind(token)}, expected a non-blank word")
    for k, tag in enumerate(tags):
        if not isinstance(tag, str):
            advice = (
                ": give tag names (map ids to names with the data set's label list)"
                if isinstance(tag, int) and not isinstance(tag, bool)
                else ""
            )
            raise DataError(
                f"{where}: tag {k + 1} of {key!r} is {_kind(tag)}, expected a tag name{advice}"
            )
        _tag_name(tag, f"{where}: token {k + 1}")
    return tuple(tokens), tuple(tags)


def _text_row(row: dict, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    text = row["text"]
    key = next(k for k in _SPANS_KEYS if k in row)
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: 'text' is {_kind(text)}, expected a non-blank text")
    if not isinstance(row[key], list):
        raise DataError(
            f"{where}: {key!r} is {_kind(row[key])}, expected a list of [start, end, type] spans"
        )
    words = split_words(text)
    starts = {s: k for k, (_, s, _) in enumerate(words)}
    ends = {e: k for k, (_, _, e) in enumerate(words)}
    found: list[tuple[int, int, str]] = []
    previous = None
    for raw in sorted((_span(item, text, where) for item in row[key]), key=lambda s: s[:2]):
        start, end, kind = raw
        if previous is not None and start < previous[1]:
            raise DataError(
                f"{where}: entities {list(previous)} and {list(raw)} overlap; a token has one "
                "tag: keep one of them"
            )
        previous = raw
        if start not in starts or end not in ends:
            raise DataError(
                f"{where}: entity {list(raw)} ({_shown(text[start:end])}) does not start and end "
                f"on word boundaries (words: {_shown(_words_around(words, start, end))}); words "
                "are runs of letters/digits and single other characters: fix the offsets"
            )
        found.append((starts[start], ends[end] + 1, kind))
    tags = _bio(found, len(words))
    return tuple(w for w, _, _ in words), tuple(tags)


def _span(item, text: str, where: str) -> tuple[int, int, str]:
    """``(start, end, type)`` of one annotated span, whitespace at its edges trimmed."""
    if isinstance(item, dict):
        start = item.get("start", item.get("start_offset"))
        end = item.get("end", item.get("end_offset"))
        kind = item.get("label", item.get("type", item.get("labels")))
        if isinstance(kind, list) and len(kind) == 1:  # Label Studio: "labels": ["PER"]
            kind = kind[0]
    elif isinstance(item, list) and len(item) == 3:
        start, end, kind = item
    else:
        raise DataError(
            f"{where}: entity {_shown(item)} is not [start, end, type] or "
            '{"start": .., "end": .., "label": ..}'
        )
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise DataError(
                f"{where}: entity {_shown(item)}: {name} is {_kind(value)}, expected a character offset"
            )
    if not isinstance(kind, str):
        raise DataError(f"{where}: entity {_shown(item)}: type is {_kind(kind)}, expected a name")
    try:
        check_name(kind)
    except LabelError as e:
        raise DataError(f"{where}: entity type: {e}") from e
    if not 0 <= start < end <= len(text):
        raise DataError(
            f"{where}: entity {_shown(item)} is out of range: expected 0 <= start < end <= "
            f"{len(text)} (the text's length in characters)"
        )
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start == end:
        raise DataError(f"{where}: entity {_shown(item)} covers only whitespace")
    return start, end, kind


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Cut ``text`` into words ``(word, start, end)``: runs of letters, digits and ``_``, and
    every other non-space character on its own (``"U.S.-based"`` → ``U . S . - based``)."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def _words_around(words, start: int, end: int) -> str:
    inside = [w for w, s, e in words if e > start and s < end]
    return " ".join(inside)[:80]


def _bio(found: Iterable[tuple[int, int, str]], length: int) -> list[str]:
    tags = [OUTSIDE] * length
    for start, end, kind in found:
        tags[start:end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start - 1)
    return tags


def _tag_name(tag: str, where: str) -> str:
    try:
        return check_name(tag)
    except LabelError as e:
        raise DataError(f"{where}: tag: {e}") from e


# --- the model's tags ---------------------------------------------------------------------


def to_scheme(sentences: Sequence[Sentence], labels: Sequence[str]) -> list[Sentence]:
    """The sentences with their tags rewritten for a model whose tags are ``labels``.

    With a recognisable scheme (:func:`~.schemes.detect`), each sentence's entities
    are read leniently (IOB1, BIO, BIOES, BILOU, IO; ``-`` or ``_`` separator) and written again
    in the model's scheme; without one, the tags must be the model's labels as they are.

    Raises:
        DataError: at the first tag (file and line) of an entity type the model does not have
            (listing every unknown type of the data), a tag that is not of any scheme, or a tag
            the model lacks.
    """
    scheme = detect(list(labels))
    _check_types(sentences, labels, scheme)
    if scheme is None:
        return list(sentences)
    out = []
    for s in sentences:
        tags = scheme.encode(_entities(s), len(s.tags))
        for k, tag in enumerate(tags):
            if tag not in labels:
                raise DataError(
                    f"{s.where(k)}: the data's {s.tags[k]!r} is {tag!r} in the model's "
                    f"{scheme.name} scheme, which is not one of its labels; add it (add-label "
                    f"--name {tag}) or fix the data"
                )
        out.append(replace(s, tags=tuple(tags)))
    return out


def read_holdout(path: str | os.PathLike, labels: Sequence[str]) -> list[Sentence]:
    """A holdout for a model whose tags are ``labels``: entities of types the model lacks are
    dropped (written ``O``) with a warning that names them, the rest as :func:`read_sentences`.
    """
    sentences, dropped = without_types(read_sentences(path), labels)
    if dropped:
        shown = ", ".join(f"{t} ({n})" for t, n in sorted(dropped.items(), key=lambda x: -x[1]))
        logger.warning(
            "%s: entity types the model lacks are not scored (read as O): %s", path, shown
        )
    return to_scheme(sentences, labels)


def without_types(
    sentences: Sequence[Sentence], labels: Sequence[str]
) -> tuple[list[Sentence], dict[str, int]]:
    """The sentences with the entities of types the model (``labels``) lacks written as ``O``,
    and how many entities of each such type were dropped. For a holdout: the gate scores the
    model's types only, so entities of other types cannot count either way.

    Raises:
        DataError: a tag that is neither ``O`` nor ``P-TYPE``; a model with no scheme.
    """
    scheme = detect(list(labels))
    if scheme is None:
        return list(sentences), {}
    have = set(scheme.entity_types(labels))
    out, dropped = [], {}
    for s in sentences:
        found = _entities(s)
        gone = [e for e in found if e[2] not in have]
        if not gone:
            out.append(s)
            continue
        for _, _, kind in gone:
            dropped[kind] = dropped.get(kind, 0) + 1
        tags = list(s.tags)
        for start, end, _ in gone:
            tags[start:end] = ["O"] * (end - start)
        out.append(replace(s, tags=tuple(tags)))
    return out, dropped


def entity_types(sentences: Iterable[Sentence]) -> list[str]:
    """The entity types the sentences' tags name, in order of first appearance.

    Raises:
        DataError: a tag that is neither ``O`` nor ``P-TYPE`` with ``P`` one of B, I, E, S, L, U.
    """
    seen: dict[str, None] = {}
    for s in sentences:
        for k, tag in enumerate(s.tags):
            parts = _parse(tag, s, k, None)
            if parts:
                seen.setdefault(parts[1], None)
    return list(seen)


def _parse(tag: str, s: Sentence, k: int, scheme: Scheme | None) -> tuple[str, str] | None:
    if tag == OUTSIDE:
        return None
    m = _ANY_TAG.fullmatch(tag)
    if not m:
        model = (
            f" (the model's scheme is {scheme.name}: {scheme.outside}, "
            f"{', '.join(scheme.tags('TYPE'))})"
            if scheme
            else ""
        )
        raise DataError(
            f"{s.where(k)}: {tag!r} is not a tag: expected {OUTSIDE} or B/I/E/S/L/U-TYPE"
            f"{model}; fix the data"
        )
    return m.group(1), m.group(3)


def _check_types(sentences: Sequence[Sentence], labels: Sequence[str], scheme: Scheme | None):
    """Raise at the first tag the model cannot take, naming every unknown type (or tag)."""
    known = set(scheme.entity_types(labels)) if scheme else set(labels)
    counts: Counter = Counter()
    first = None
    for s in sentences:
        for k, tag in enumerate(s.tags):
            name = tag if scheme is None else _type_of(tag, s, k, scheme)
            if name is not None and name not in known:
                counts[name] += 1
                first = first or (s, k)
    if first is None:
        return
    s, k = first
    listed = ", ".join(f"{n!r} ({c} tag{'s' * (c != 1)})" for n, c in counts.most_common(10))
    more = " ..." if len(counts) > 10 else ""
    if scheme is None:
        raise DataError(
            f"{s.where(k)}: tag {s.tags[k]!r} is not a label of the model, whose labels follow no "
            f"tagging scheme ({_columns(labels)}); unknown tags: {listed}{more}; fix the data"
        )
    raise DataError(
        f"{s.where(k)}: tag {s.tags[k]!r} is of entity type {_type_of(s.tags[k], s, k, scheme)!r}, "
        f"which the model does not have (its types: {', '.join(sorted(known)) or 'none'}); "
        f"unknown types in the data: {listed}{more}; add them first (add-label --name TYPE, "
        "or --add) or fix the data"
    )


def _type_of(tag: str, s: Sentence, k: int, scheme: Scheme) -> str | None:
    parts = _parse(tag, s, k, scheme)
    return parts[1] if parts else None


def _entities(s: Sentence) -> list[tuple[int, int, str]]:
    """Entity spans of a sentence in any scheme (read as BIOES, or BILOU if it uses L/U)."""
    canon = []
    for k, tag in enumerate(s.tags):
        parts = _parse(tag, s, k, None)
        canon.append(OUTSIDE if parts is None else f"{parts[0]}-{parts[1]}")
    used = {t[0] for t in canon if t != OUTSIDE}
    if used & {"E", "S"} and used & {"L", "U"}:
        k = next(k for k, t in enumerate(canon) if t[0] in "LU")
        raise DataError(f"{s.where(k)}: the sentence mixes BIOES (E-, S-) and BILOU (L-, U-) tags")
    return spans(canon, Scheme("BILOU" if used & {"L", "U"} else "BIOES"))


# --- subword alignment (transformers) -----------------------------------------------------


def align(tokenizer, sentences: Sequence[Sentence], label2id: dict, max_length: int) -> list[dict]:
    """Tokenise the sentences' words and give each word's tag id to its FIRST subword.

    As the transformers token-classification examples do: the other subwords of a word and
    the special tokens get ``-100`` (the loss ignores them). Sentences longer than
    ``max_length`` subwords are truncated; their last words then have no label (logged).

    Args:
        tokenizer: a *fast* tokenizer (``word_ids`` needs one).
        sentences: from :func:`read_sentences` with the model's labels.
        label2id: the model's ``label2id``.
        max_length: the most tokens per sentence, special tokens included.

    Returns:
        one dict per sentence: ``input_ids``, ``attention_mask``, ``labels`` (lists of ints)
        and ``word_ids`` (the word of each token, ``None`` for special tokens; for
        :func:`word_predictions`).

    Raises:
        UnsupportedModelError: a slow (Python) tokenizer.
        OptionsError: ``max_length`` leaves no room for a word.
        DataError: a tag not in ``label2id`` (file and line).
    """
    _check_tokenizer(tokenizer, max_length)
    if not sentences:
        return []
    enc = tokenizer(
        [list(s.tokens) for s in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    out = []
    for i, s in enumerate(sentences):
        word_ids = enc.word_ids(i)
        out.append(
            {
                "input_ids": list(enc["input_ids"][i]),
                "attention_mask": list(enc["attention_mask"][i]),
                "labels": _first_subword_labels(word_ids, s, label2id),
                "word_ids": list(word_ids),
            }
        )
    _log_unused(sentences, out, max_length)
    return out


def _check_tokenizer(tokenizer, max_length: int) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise UnsupportedModelError(
            f"the model's tokenizer {type(tokenizer).__name__} is a slow (Python) tokenizer; "
            "token classification needs a fast one to map subwords to words: save the model "
            "with a tokenizer.json (a fast tokenizer), or use one that has it"
        )
    room = tokenizer.num_special_tokens_to_add(pair=False)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= room:
        raise OptionsError(
            f"max_length is {max_length!r}, expected an integer above {room} (the tokenizer's "
            "special tokens)"
        )


def _log_unused(sentences: Sequence[Sentence], aligned: list[dict], max_length: int) -> None:
    """Say how many words have no label: cut off by truncation, or dropped by the tokenizer
    (a word of characters its normaliser removes)."""
    cut = dropped = 0
    for s, a in zip(sentences, aligned, strict=True):
        seen = {w for w in a["word_ids"] if w is not None}
        missing = len(s.tokens) - len(seen)
        truncated = len(a["input_ids"]) >= max_length and max(seen, default=-1) + 1 < len(s.tokens)
        cut += truncated
        dropped += missing - (len(s.tokens) - max(seen, default=-1) - 1 if truncated else 0)
    if cut:
        log.warning(
            "%d of %d sentences cut at %d tokens: their last words are not used",
            cut,
            len(sentences),
            max_length,
        )
    if dropped:
        log.warning("%d words became no token (the tokenizer removed them): not used", dropped)


def _first_subword_labels(word_ids: Sequence[int | None], s: Sentence, label2id: dict) -> list[int]:
    labels, previous = [], None
    for w in word_ids:
        if w is None or w == previous:
            labels.append(IGNORE)
        else:
            tag = s.tags[w]
            if tag not in label2id:
                raise DataError(
                    f"{s.where(w)}: tag {tag!r} is not a label of the model; read the file "
                    "with the model's labels (read_sentences(..., labels=...))"
                )
            labels.append(label2id[tag])
        previous = w
    return labels


def word_predictions(
    word_ids: Sequence[int | None],
    token_predictions: Sequence,
    n_words: int | None = None,
    missing=None,
) -> list:
    """The prediction of each word: its first subword's.

    Args:
        word_ids: from :func:`align` (``None`` for special tokens).
        token_predictions: one prediction per token, aligned with ``word_ids`` (cut padding off).
        n_words: the sentence's number of words (default: the last word seen + 1).
        missing: the prediction of a word with no token (cut by truncation, or dropped by the
            tokenizer).

    Raises:
        ValueError: ``token_predictions`` and ``word_ids`` differ in length.
    """
    if len(token_predictions) != len(word_ids):
        raise ValueError(
            f"{len(token_predictions)} token predictions for {len(word_ids)} tokens: "
            "align them (cut the padding off)"
        )
    seen = [w for w in word_ids if w is not None]
    out = [missing] * (n_words if n_words is not None else max(seen, default=-1) + 1)
    done = set()
    for w, p in zip(word_ids, token_predictions, strict=True):
        if w is not None and w not in done and w < len(out):
            out[w] = p
            done.add(w)
    return out


# --- messages -----------------------------------------------------------------------------


def _shown(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value) -> str:
    return f"{type(value).__name__} {_shown(value, 40)}"


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())
