"""How sure is an old-label drop: its 95 % interval and an exact test, from PAIRED predictions.

A 0.5 pt drop on 1,500 holdout examples is 7-8 examples; whether that is a regression or the
luck of which examples were held out is what this module tells.

**Paired, not two proportions.** The parent and the child answer the SAME examples, so their
accuracies are strongly correlated: most examples are right (or wrong) for both, and only the
examples whose correctness changed carry information about the difference. Per example the
difference is ``+1`` (right -> wrong, ``b`` of them), ``-1`` (wrong -> right, ``c``) or ``0``,
and the drop is ``100 * (b - c) / n`` points. Treating the two accuracies as independent (two
Wilson intervals) would ignore the pairing and overstate the noise about threefold (93 % on
1,500 examples: ±1.8 pt unpaired against ±0.55 pt paired with 14 and 4 changed examples).

**The interval: a seeded paired bootstrap over examples** (percentile interval, 2,000
resamples). Resampling the ``n`` examples with replacement only redistributes the three kinds of
example, so it is exactly drawing ``(b*, c*)`` from ``Multinomial(n; b/n, c/n, rest)``; it is
drawn as two binomials, which costs the same for any holdout size (about a millisecond: the
report is built after every training) and with its own generator (the global torch RNG, which
training seeds, is left alone). Percentiles need no normal approximation (the drop is a
difference of small, skewed counts); the fixed seed makes the interval deterministic; and when
no example changed correctness it is exactly ``[0, 0]``: the models agree on every example, and
nothing in the holdout measures a difference.

**The test: McNemar's**, which Dietterich (1998) recommends for two classifiers on one test
set, in its exact form (two-sided binomial test of ``b`` among the ``b + c`` changed examples at
1/2): exact at any count, no seed, no continuity correction to choose. Its p-value says whether
the change is distinguishable from noise.

The two look at the same counts from two sides and agree except at the margin with a handful of
changed examples, where a percentile bootstrap is known to be a little narrow; there the verdict
says ``borderline`` instead of picking one. The verdict is ``within noise`` when the interval
contains 0 and ``p >= 0.05``, ``beyond noise`` when the interval excludes 0 and ``p < 0.05``.

Both measure the noise of the holdout draw only (which examples were held out), not of training
(another seed gives another child): ``train --seeds`` and the benchmark's ``--train-seed`` measure
that. The gate's pass/fail rule is unchanged: the point estimate against ``--max-drop``.

Torch is imported inside :func:`bootstrap_drop_interval`; importing this module is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .errors import OptionsError

__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "PairedDrop",
    "bootstrap_drop_interval",
    "describe_drop",
    "f1_drop_interval",
    "mcnemar_exact_p",
    "paired_drop",
]

#: confidence level of the interval (the test's significance level is ``1 - DEFAULT_LEVEL``)
DEFAULT_LEVEL = 0.95
#: bootstrap resamples
DEFAULT_RESAMPLES = 2000
#: bootstrap seed (fixed: the same predictions always give the same interval)
DEFAULT_SEED = 0
METHOD = "paired bootstrap over examples, percentile interval"
TEST = "exact McNemar"


@dataclass(frozen=True)
class PairedDrop:
    """The uncertainty of an accuracy drop measured on paired predictions.

    Attributes:
        n: examples compared.
        right_to_wrong, wrong_to_right: examples whose correctness changed (McNemar's b and c).
        drop_pts: ``100 * (right_to_wrong - wrong_to_right) / n``.
        low_pts, high_pts: the ``level`` interval of the drop, in points.
        level: the interval's confidence level.
        p_value: the exact McNemar test's two-sided p-value (1.0 when nothing changed).
        verdict: ``within noise``, ``beyond noise`` or ``borderline`` (see the module docstring).
        method, resamples, seed: how the interval was computed.
        test: how the p-value was computed.
    """

    n: int
    right_to_wrong: int
    wrong_to_right: int
    drop_pts: float
    low_pts: float
    high_pts: float
    level: float
    p_value: float
    verdict: str
    method: str = METHOD
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    test: str = TEST

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain JSON-able data."""
        return asdict(self)

    def describe(self) -> str:
        """One line, e.g. ``drop 0.67 pt, 95% CI [-0.07, 1.40] pt, exact McNemar p = 0.099:
        within noise``."""
        return describe_drop(self.to_dict()) or ""


def paired_drop(
    n: int,
    right_to_wrong: int,
    wrong_to_right: int,
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> PairedDrop:
    """Interval, exact test and verdict for the drop of accuracy between paired predictions.

    Args:
        n: examples compared (each judged by both models).
        right_to_wrong: examples right before and wrong after.
        wrong_to_right: examples wrong before and right after.
        level: confidence level of the interval; the test uses ``1 - level``.
        resamples, seed: of the bootstrap.

    Returns:
        a :class:`PairedDrop`.

    Raises:
        OptionsError: counts that cannot come from ``n`` examples, a level outside (0, 1) or
            fewer than one resample.

    Example:
        >>> paired_drop(1500, 20, 10).describe()  # 10 examples net: within noise
        'drop 0.67 pt, 95% CI [-0.07, 1.40] pt, exact McNemar p = 0.099: within noise'
        >>> paired_drop(1500, 14, 4).describe()  # the same drop from fewer changes: beyond
        'drop 0.67 pt, 95% CI [0.13, 1.20] pt, exact McNemar p = 0.031: beyond noise'
    """
    low, high = bootstrap_drop_interval(
        n, right_to_wrong, wrong_to_right, level=level, resamples=resamples, seed=seed
    )
    p = mcnemar_exact_p(right_to_wrong, wrong_to_right)
    noisy_interval, noisy_test = low <= 0 <= high, p >= 1 - level
    if noisy_interval and noisy_test:
        verdict = "within noise"
    elif not noisy_interval and not noisy_test:
        verdict = "beyond noise"
    else:
        verdict = "borderline"
    return PairedDrop(
        n=n,
        right_to_wrong=right_to_wrong,
        wrong_to_right=wrong_to_right,
        drop_pts=100.0 * (right_to_wrong - wrong_to_right) / n,
        low_pts=low,
        high_pts=high,
        level=level,
        p_value=p,
        verdict=verdict,
        resamples=resamples,
        seed=seed,
    )


def bootstrap_drop_interval(
    n: int,
    right_to_wrong: int,
    wrong_to_right: int,
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """The percentile interval of the drop, in points, from a seeded paired bootstrap.

    Each resample draws ``n`` examples with replacement; only how many of them changed
    right -> wrong (``b*``) and wrong -> right (``c*``) matters, so ``b* ~ Binomial(n, b/n)``
    and ``c* | b* ~ Binomial(n - b*, c/(n - b))`` are drawn directly. The bounds are the
    ``k``-th smallest and ``k``-th largest of the resampled drops, ``k = floor(resamples *
    (1 - level) / 2)``, widened to contain the observed drop if the draw ever put it outside.

    Returns:
        ``(low, high)`` in percentage points; ``(0.0, 0.0)`` when both counts are 0.

    Raises:
        OptionsError: see :func:`paired_drop`.
    """
    _check(n, right_to_wrong, wrong_to_right, level, resamples)
    observed = 100.0 * (right_to_wrong - wrong_to_right) / n
    if right_to_wrong == wrong_to_right == 0:
        return 0.0, 0.0  # what the bootstrap gives too: every resample has b* = c* = 0
    import torch

    g = torch.Generator().manual_seed(seed)
    count = torch.full((resamples,), float(n), dtype=torch.float64)
    b = torch.binomial(count, torch.full_like(count, right_to_wrong / n), generator=g)
    rest = n - right_to_wrong
    p_c = wrong_to_right / rest if rest else 0.0
    c = torch.binomial(count - b, torch.full_like(count, p_c), generator=g)
    drops = sorted((b - c).to(torch.int64).tolist())
    k = int(resamples * (1 - level) / 2)
    low, high = 100.0 * drops[k] / n, 100.0 * drops[resamples - 1 - k] / n
    return min(low, observed), max(high, observed)


def f1_drop_interval(
    before,
    after,
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """The percentile interval of a micro-F1 drop, in points, from a seeded paired bootstrap.

    ``before`` and ``after`` are ``[units, 3]`` tensors: each unit's (an example's, a
    sentence's) true positives, false positives and false negatives for the parent and the
    child. Each resample draws units with replacement, the same for both models, and recomputes
    both micro F1s (an F1 with nothing to score is 1). The bounds are widened to contain the
    observed drop.

    Returns:
        ``(low, high)`` in percentage points; ``(0.0, 0.0)`` with no unit.

    Raises:
        OptionsError: see :func:`paired_drop` (level, resamples).
    """
    import torch

    n = len(before)
    if not n:
        return 0.0, 0.0
    _check(n, 0, 0, level, resamples)
    before, after = before.double(), after.double()
    observed = 100 * (
        _micro_f1(before.sum(0, keepdim=True)) - _micro_f1(after.sum(0, keepdim=True))
    )
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (resamples, n), generator=g)
    drops = (100 * (_micro_f1(before[idx].sum(1)) - _micro_f1(after[idx].sum(1)))).sort().values
    k = int(resamples * (1 - level) / 2)
    low, high = drops[k].item(), drops[-1 - k].item()
    return min(low, observed.item()), max(high, observed.item())


def _micro_f1(counts):
    """Micro F1 of each row of summed ``[rows, 3]`` (tp, fp, fn) counts; 1 where nothing is scored."""
    import torch

    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
    denom = 2 * tp + fp + fn
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1e-12), torch.ones_like(denom))


def mcnemar_exact_p(right_to_wrong: int, wrong_to_right: int) -> float:
    """Two-sided p-value of the exact McNemar test: ``b`` among ``b + c`` at probability 1/2.

    ``p = min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``; 1.0 when
    ``b + c == 0``. Summed in log space (``lgamma``), so it is fast for any count.

    Raises:
        OptionsError: a negative count.
    """
    if right_to_wrong < 0 or wrong_to_right < 0:
        raise OptionsError(
            f"McNemar counts must be >= 0, got {right_to_wrong} and {wrong_to_right}"
        )
    m, k = right_to_wrong + wrong_to_right, min(right_to_wrong, wrong_to_right)
    if m == 0:
        return 1.0
    base = math.lgamma(m + 1) - m * math.log(2)
    logs = [base - math.lgamma(i + 1) - math.lgamma(m - i + 1) for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * math.fsum(math.exp(x - top) for x in logs)
    return min(1.0, 2.0 * tail)


def describe_drop(data: Mapping[str, Any]) -> str | None:
    """One line from a :meth:`PairedDrop.to_dict` (e.g. read back from ``headsurgeon.json``).

    Returns:
        ``drop 0.67 pt, 95% CI [-0.07, 1.40] pt, exact McNemar p = 0.099: within noise``, or
        ``None`` when ``data`` lacks a field (a record written by another version). A negative
        drop is an improvement, and the line says so: ``drop -1.70 pt (an improvement), ...``.
    """
    try:
        drop = float(data["drop_pts"])
        return (
            f"drop {drop:.2f} pt{' (an improvement)' if drop < 0 else ''}, "
            f"{float(data['level']):.0%} CI "
            f"[{float(data['low_pts']):.2f}, {float(data['high_pts']):.2f}] pt, "
            f"exact McNemar p = {float(data['p_value']):.2g}: {data['verdict']}"
        )
    except (KeyError, TypeError, ValueError):
        return None


def _check(n: int, b: int, c: int, level: float, resamples: int) -> None:
    if not (n >= 1 and 0 <= b and 0 <= c and b + c <= n):
        raise OptionsError(
            f"changed examples must be counts within the {n} example(s) compared, got "
            f"{b} right -> wrong and {c} wrong -> right"
        )
    if not 0 < level < 1:
        raise OptionsError(f"the confidence level must be in (0, 1), got {level}")
    if resamples < 1:
        raise OptionsError(f"the bootstrap needs at least 1 resample, got {resamples}")
