"""Figures that would mislead: a curve hidden under another's, a band that fills a panel."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import figures  # noqa: E402


def test_a_method_with_another_ones_values_says_so_in_the_legend(tmp_path, monkeypatch):
    """SGD trains as fine-tuning does in the authors' preset: its line would cover fine-tuning's,
    leaving a legend entry with nothing visible; the legend says whose values it repeats."""
    cells = [(trial, after, task, acc) for trial, shift in (("ft", 0.0), ("sgd", 0.0), ("ewc", 0.05))
             for after in (1, 2) for task, acc in ((1, 0.9 - after * 0.1 + shift), (2, 0.8 + shift)) if task <= after]
    matrices = pd.DataFrame(cells, columns=["trial_id", "after_task", "task", "accuracy"])
    best = pd.DataFrame({"trial_id": ["ft", "sgd", "ewc"], "method": ["finetune", "sgd", "ewc"],
                         "config": ["", "", "lam=1"]})
    legends = []
    monkeypatch.setattr(figures, "save", lambda fig, out, stem: legends.append(
        [t.get_text() for t in fig.axes[0].get_legend().get_texts()]) or plt.close(fig))
    figures.running_accuracy(matrices, best, tmp_path)
    assert set(legends[0]) >= {"Fine-tuning", "SGD (the same values as Fine-tuning, drawn over it)", "EWC (lam=1)"}


def test_a_metric_whose_seeds_spread_exceeds_its_differences_shows_the_whole_bands(tmp_path, monkeypatch):
    """FWT of 0.002-0.004 with a seeds' std of 0.005 (permuted MNIST): limits from the means alone
    would clip the band into a fill of the whole panel; the axis holds mean ± std instead, while
    ACC, whose differences exceed its spread, keeps limits from its means."""
    rows = [{"method": "spp", "lam": lam, "seed": seed, "status": "finished", "penalty_step": "explicit",
             "searched": "lam",
             "acc": 0.78 + 0.1 * i + 0.002 * seed, "fwt": 0.003 + 0.01 * (seed - 1), "bwt": -0.1 + 0.02 * i}
            for i, lam in enumerate((0.1, 1.0, 10.0)) for seed in range(3)]
    limits = []
    monkeypatch.setattr(figures, "save", lambda fig, out, stem: limits.append(
        [fig.axes[i].get_ylim() for i in (0, 2)]) or plt.close(fig))
    figures.lambda_curve(pd.DataFrame(rows), tmp_path)
    (acc_low, acc_high), (fwt_low, fwt_high) = limits[0]
    assert fwt_low < 0.003 - 0.009 and fwt_high > 0.003 + 0.009  # the band, std 0.01, inside the axis
    assert 0.76 < acc_low < 0.782 and acc_high < 1.0  # from the means (0.782-0.986) with a small pad
