"""What a set of paired seeds can say: intervals, Holm's correction, equivalence and claims.

Every table that compares (against fine-tuning, Figure 4's claims, ``spp-sweep compare``, the
methods' ranking in ``recommend``) words its verdicts here, so that one rule reads the same
everywhere:

- a difference is ours(seed) − reference(seed) over the seeds both finished, each seed once;
  its interval is Student's t over those differences (95% by default);
- **above / below** only where the interval, after Holm's correction within the table's family of
  comparisons, excludes 0; **equivalent within ±m** only where the whole interval shown lies inside
  ±m (two one-sided tests, each at 2.5%); otherwise **not separated**, with the interval;
- a claim of the paper is **confirmed** where the interval lies on the claimed side of its
  margin, **refuted** where it excludes the claim, and otherwise **not settled at n seeds**,
  with the smallest effect that n seeds could have detected (80% power).

Absence of evidence is never written as evidence of absence: there is no "tied".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

ALPHA = 0.05  # two-sided level of every interval and test
MARGIN = 0.01  # default equivalence margin: 1 point of ACC (a study's `equivalence_margin` overrides it)
POWER = 0.8  # the power at which a table states the smallest effect it could have detected


@dataclass(frozen=True)
class Difference:
    """ours − reference, paired by seed: mean, std, the interval and the p of a paired t-test.

    ``low``/``high`` are the interval at ``level`` (0.95, or Holm's adjusted level after
    :func:`holm`); ``p_adjusted`` is Holm's p within the family (``p`` alone: a family of one)."""

    n: int
    mean: float
    std: float
    low: float
    high: float
    p: float
    level: float = 1 - ALPHA
    p_adjusted: float = math.nan
    family: int = 1
    correction: str = ""  # "Holm" (holm) or "Bonferroni": how the interval was widened for its family

    @property
    def separated(self) -> bool:
        """Holm's adjusted interval excludes 0."""
        return self.n >= 2 and not math.isnan(self.p_adjusted) and self.p_adjusted < ALPHA

    def detectable(self) -> float:
        """The smallest |mean difference| these seeds detect with ``POWER`` at ``ALPHA`` (paired t),
        from the observed std: the power note of a verdict that is not settled."""
        if self.n < 2 or math.isnan(self.std):
            return math.nan
        from scipy import stats

        t_alpha = stats.t.ppf(1 - ALPHA / 2, self.n - 1)
        t_beta = stats.t.ppf(POWER, self.n - 1)
        return float((t_alpha + t_beta) * self.std / math.sqrt(self.n))


def per_seed(trials: pd.DataFrame, column: str) -> pd.Series:
    """One value per seed: the finished trials' ``column``, each seed counted once (a seed that
    two phases trained alike is one observation, averaged if they differ)."""
    done = trials[trials["status"] == "finished"] if "status" in trials else trials
    return done.groupby("seed")[column].mean().dropna()


def paired(ours: pd.Series, reference: pd.Series, level: float = 1 - ALPHA) -> Difference:
    """ours − reference over the seeds both have (Series indexed by seed), with its t interval."""
    both = ours.index.intersection(reference.index)
    diff = (ours[both].astype(float) - reference[both].astype(float)).dropna().to_numpy()
    return difference(diff, level)


def difference(diff: Sequence[float] | np.ndarray, level: float = 1 - ALPHA) -> Difference:
    """The interval and two-sided p of the mean of paired differences (Student's t, n − 1 df)."""
    values = np.asarray(diff, dtype=float)
    n = len(values)
    if n == 0:
        return Difference(0, math.nan, math.nan, math.nan, math.nan, math.nan, level)
    mean = float(values.mean())
    if n == 1:
        return Difference(1, mean, math.nan, -math.inf, math.inf, math.nan, level)
    from scipy import stats

    std = float(values.std(ddof=1))
    error = std / math.sqrt(n)
    if error <= 1e-15 * max(1.0, abs(mean)):  # every seed the same difference: no spread to test with
        p = 1.0 if mean == 0 else 0.0
        return Difference(n, mean, std, mean, mean, p, level, p)
    t = mean / error
    p = float(2 * stats.t.sf(abs(t), n - 1))  # the paired t-test's p
    half = float(stats.t.ppf(1 - (1 - level) / 2, n - 1)) * error
    return Difference(n, mean, std, mean - half, mean + half, p, level, p)


def holm(diffs: Sequence[Difference]) -> list[Difference]:
    """Holm's step-down correction over a family: each difference with its adjusted p and an
    interval at the level that makes "excludes 0" and "adjusted p < ALPHA" the same statement.

    Adjusted p of the k-th smallest p (k = 0, 1, ...) of m: max over j ≤ k of (m − j)·p_(j), at
    most 1 (Holm 1979). A t interval at level 1 − γ excludes 0 exactly when p < γ, so the interval
    shown is at γ = ALPHA · p / p_adjusted: the 95% interval for a family of one."""
    usable = [i for i, d in enumerate(diffs) if not math.isnan(d.p)]
    m = len(usable)
    out = list(diffs)
    running = 0.0
    for rank, index in enumerate(sorted(usable, key=lambda i: diffs[i].p)):
        d = diffs[index]
        running = max(running, min(1.0, (m - rank) * d.p))
        gamma = ALPHA * d.p / running if running > 0 else ALPHA / (m - rank)
        widened = at_level(d, 1 - min(gamma, ALPHA))
        out[index] = replace(widened, p_adjusted=running, family=m, correction="Holm")
    return out


def at_level(d: Difference, level: float) -> Difference:
    """The same difference with its t interval at another confidence level."""
    if d.n < 2 or d.low == d.high:
        return replace(d, level=level)
    from scipy import stats

    half = float(stats.t.ppf(1 - (1 - level) / 2, d.n - 1)) * d.std / math.sqrt(d.n)
    return replace(d, low=d.mean - half, high=d.mean + half, level=level)


def verdict(d: Difference, margin: float = MARGIN) -> str:
    """The words of a comparison: above, below, equivalent within ±margin, or not separated."""
    if d.n < 2:
        return f"not separated ({d.n} seed{'s' if d.n != 1 else ''}: no interval)"
    if d.separated:
        return "above" if d.mean > 0 else "below"
    if equivalent(d, margin):
        return f"equivalent within ±{_points(margin)}"
    return f"not separated {interval_text(d)}"


def equivalent(d: Difference, margin: float = MARGIN) -> bool:
    """TOST on the interval shown: its whole 95% interval (widened by Holm in a family, as for
    "above/below") inside ±margin, each one-sided test at 2.5%."""
    return d.n >= 2 and -margin < d.low and d.high < margin


def interval_text(d: Difference, scale: float = 100.0) -> str:
    """``[a, b]`` in points (``scale`` 100), the correction named where it widened the interval."""
    if d.n < 2:
        return "[n/a]"
    form = "+.2f" if scale == 100.0 else "+.4g"  # points, or the measure's own units
    text = f"[{scale * d.low:{form}}, {scale * d.high:{form}}]"
    widened = abs(d.level - (1 - ALPHA)) > 1e-9 and d.correction and d.family > 1
    return f"{text} ({d.correction}, {d.family} tests)" if widened else text


def claim(d: Difference, side: str, threshold: float = 0.0, margin: float = MARGIN, scale: float = 100.0) -> str:
    """A paper's claim about a paired difference, graded by its interval.

    ``side``: ``above`` (the claim: difference > threshold), ``below`` (< threshold) or
    ``equivalent`` (|difference| < margin). Confirmed where the interval lies on the claimed side
    of the threshold (inside ±margin for equivalence), refuted where it excludes the claim, and
    A claimed difference whose whole interval lies inside ±margin is refuted too: the data show no
    difference of the size that matters. Otherwise not settled at n seeds, with the power note.
    ``scale``: 100 for ACC (points), 1 for a measure in its own units."""
    if d.n < 2:
        return f"not settled ({d.n} seed{'s' if d.n != 1 else ''}: no interval)"
    low, high = d.low, d.high
    if side == "equivalent":
        plain = at_level(d, 1 - ALPHA)
        if -margin < plain.low and plain.high < margin:
            return f"confirmed: within ±{_points(margin)}"
        if plain.low >= margin or plain.high <= -margin:
            return f"refuted: the interval lies outside ±{_points(margin)}"
    elif side == "above":
        if low > threshold:
            return "confirmed"
        if high <= threshold:
            return "refuted" + (": below" if high < 0 else f": not above {_points(threshold, sign=True)}")
    elif side == "below":
        if high < threshold:
            return "confirmed"
        if low >= threshold:
            return "refuted" + (": above" if low > 0 else f": not below {_points(threshold, sign=True)}")
    else:
        raise ValueError(f"side: expected above, below or equivalent, got {side!r}")
    if side != "equivalent" and -margin < low and high < margin:  # a claimed gain no bigger than the margin
        return f"refuted: equivalent within ±{_points(margin)}"
    return f"not settled at {d.n} seeds {interval_text(d, scale)}; {power_note(d, scale)}"


def power_note(d: Difference, scale: float = 100.0) -> str:
    """The smallest effect these seeds could have detected, in points (``scale`` 100) or the
    measure's own units (1)."""
    smallest = d.detectable()
    size = _points(smallest) if scale == 100.0 else f"{scale * smallest:.3g}"
    return "n/a" if math.isnan(smallest) else f"{d.n} seeds detect only |Δ| ≥ {size} ({POWER:.0%} power)"


def row(d: Difference, scale: float = 100.0) -> dict[str, object]:
    """The columns a comparing table shows for one difference (points, interval, p, seeds)."""
    return {"Δ (points)": "n/a" if math.isnan(d.mean) else f"{scale * d.mean:+.2f}",
            "95% interval": interval_text(d, scale), "p": _p(d.p),
            "p (Holm)": _p(d.p_adjusted) if d.family > 1 else _p(d.p), "seeds paired": d.n}


def _p(value: float) -> str:
    return "n/a" if math.isnan(value) else (f"{value:.3f}" if value >= 0.001 else "<0.001")


def _points(value: float, sign: bool = False) -> str:
    number = f"{100 * value:+.2g}" if sign else f"{100 * value:.2g}"
    return f"{number} point{'' if abs(100 * value) == 1 else 's'}"
