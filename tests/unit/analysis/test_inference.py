"""analysis/inference.py against hand computations.

With two degrees of freedom Student's t has a closed form, F(t) = 1/2 + t / (2 sqrt(2 + t²)),
so three paired seeds give intervals, p-values and the power note by hand, without scipy."""

from __future__ import annotations

import math

import pytest

from analysis.inference import claim, difference, holm, interval_text, verdict


def t2_quantile(q: float) -> float:
    """Student's t quantile at 2 df, from F(t) = 1/2 + t / (2 sqrt(2 + t²)) solved for t."""
    a = (2 * q - 1) ** 2
    return math.copysign(math.sqrt(2 * a / (1 - a)), q - 0.5)


def t2_p(t: float) -> float:
    """Two-sided p at 2 df: 1 − |t| / sqrt(2 + t²)."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


def test_a_paired_interval_and_p_by_hand() -> None:
    d = difference([0.10, 0.09, 0.11])
    mean, error = 0.10, 0.01 / math.sqrt(3)
    assert d.n == 3 and d.mean == pytest.approx(mean) and d.std == pytest.approx(0.01)
    assert t2_quantile(0.975) == pytest.approx(4.302652729911275)
    assert (d.low, d.high) == pytest.approx((mean - t2_quantile(0.975) * error, mean + t2_quantile(0.975) * error))
    assert d.p == pytest.approx(t2_p(mean / error))
    assert verdict(d) == "above" and interval_text(d) == "[+7.52, +12.48]"
    assert verdict(difference([-0.10, -0.09, -0.11])) == "below"


def test_holm_on_a_hand_computed_family() -> None:
    """Three comparisons at 2 df: p by the closed form, adjusted by Holm's step-down by hand."""
    family = [[0.030, 0.034, 0.032], [0.02, 0.036, 0.025], [0.03, -0.01, 0.05]]
    raw = []
    for values in family:
        mean = sum(values) / 3
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
        raw.append(t2_p(mean / (std / math.sqrt(3))))
    order = sorted(range(3), key=lambda i: raw[i])
    expected, running = [0.0] * 3, 0.0
    for rank, index in enumerate(order):  # (m − k)·p_(k), never below the one before, at most 1
        running = max(running, min(1.0, (3 - rank) * raw[index]))
        expected[index] = running
    adjusted = holm([difference(v) for v in family])
    assert [d.p for d in adjusted] == pytest.approx(raw)
    assert [d.p_adjusted for d in adjusted] == pytest.approx(expected)
    assert raw[1] < 0.05 <= expected[1]  # separated alone, not after the correction
    for d in adjusted:  # the words follow the interval shown: it excludes 0 exactly when Holm separates
        assert d.separated == (d.low > 0 or d.high < 0)
        assert d.family == 3
    assert verdict(adjusted[0]) == "above"
    assert verdict(adjusted[1]).startswith("not separated [") and "(Holm, 3 tests)" in verdict(adjusted[1])


def test_a_wide_interval_never_reads_tied_or_equivalent() -> None:
    wide = difference([0.10, -0.05, 0.08])  # +4.3 points, interval about ±20 points
    words = verdict(wide)
    assert words.startswith("not separated [") and "equivalent" not in words and "tied" not in words
    assert claim(wide, "equivalent").startswith("not settled at 3 seeds")
    assert claim(wide, "above").startswith("not settled at 3 seeds")


def test_a_tight_interval_inside_the_margin_reads_equivalent() -> None:
    tight = difference([0.001, -0.001, 0.002, -0.002, 0.0])  # mean 0, 95% interval about ±0.2 points
    assert verdict(tight) == "equivalent within ±1 point"
    assert verdict(tight, margin=0.001).startswith("not separated")  # the same data, a margin it does not fit
    assert claim(tight, "equivalent") == "confirmed: within ±1 point"
    assert claim(tight, "above") == "refuted: equivalent within ±1 point"  # no gain of a size that matters


def test_claims_are_confirmed_refuted_or_not_settled_by_the_interval() -> None:
    above = difference([0.10, 0.09, 0.11])  # interval about [+7.5, +12.5] points
    assert claim(above, "above") == "confirmed"
    assert claim(above, "above", threshold=0.15).startswith("refuted")  # excludes a 15-point margin
    assert claim(above, "below") == "refuted: above"
    assert claim(above, "equivalent").startswith("refuted: the interval lies outside")
    mixed = difference([0.10, 0.02, 0.12])  # interval about [−5, +21] points: contains 0 and the claim
    note = claim(mixed, "above", threshold=0.01)
    std = math.sqrt(sum((v - 0.08) ** 2 for v in (0.10, 0.02, 0.12)) / 2)
    smallest = (t2_quantile(0.975) + t2_quantile(0.8)) * std / math.sqrt(3)  # 80% power, paired t
    assert note.startswith("not settled at 3 seeds [") and f"|Δ| ≥ {100 * smallest:.2g} points" in note
    assert claim(difference([0.1]), "above").startswith("not settled (1 seed")
