import math

import numpy as np
import pytest

from spp_sweep import metrics

P = [
    [0.9, 0.2, 0.1],
    [0.7, 0.8, 0.3],
    [0.6, 0.5, 0.95],
]


def test_acc_is_mean_of_last_row():
    assert metrics.average_accuracy(P) == pytest.approx((0.6 + 0.5 + 0.95) / 3)


def test_bwt_by_hand():
    assert metrics.backward_transfer(P) == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8)) / 2)


def test_paper_fwt_uses_joint_accuracies():
    m = [0.95, 0.9, 0.99]
    assert metrics.forward_transfer_paper(P, m) == pytest.approx(((0.9 - 0.95) + (0.8 - 0.9)) / 2)
    assert math.isnan(metrics.forward_transfer_paper(P, None))


def test_standard_fwt_against_random_init():
    b = [0.5, 0.4, 0.2]
    assert metrics.forward_transfer_standard(P, b) == pytest.approx(((0.2 - 0.4) + (0.3 - 0.2)) / 2)


def test_smt_is_mean_population_variance_after_learning():
    d1 = np.var([0.9, 0.7, 0.6])
    d2 = np.var([0.8, 0.5])
    assert metrics.stability(P) == pytest.approx((d1 + d2) / 2)


def test_partial_matrix_uses_seen_tasks_only():
    part = P[:2]
    assert metrics.average_accuracy(part) == pytest.approx((0.7 + 0.8) / 2)
    assert metrics.backward_transfer(part) == pytest.approx(0.7 - 0.9)
    assert math.isnan(metrics.backward_transfer(P[:1]))
    assert math.isnan(metrics.average_accuracy([]))


def test_summarize_keys():
    assert set(metrics.summarize(P)) == {"acc", "bwt", "fwt", "fwt_paper", "smt"}
