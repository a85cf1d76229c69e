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
    ACC, whose differences exceed its spread, keeps limits from its means and their narrow bands."""
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
    assert 0.76 < acc_low < 0.78 and 0.986 < acc_high < 1.01  # means ± std (0.780-0.986), a small pad


def test_ordinary_bands_are_shown_whole_and_only_an_astray_seeds_band_is_clipped(tmp_path, monkeypatch):
    """ACC rising 0.632 -> 0.641 over λ with a seeds' std of 0.005 (the 784-512-256 ablation): the
    top point's band must fit inside the axis, not run off it; a point whose std is 20× the others'
    (one seed gone astray) is clipped instead of flattening the curve."""
    def rows(astray: bool) -> list[dict]:
        out = []
        for i, lam in enumerate((0.1, 1.0, 4.0, 12.0)):
            for seed in range(3):
                spread = 0.1 if (astray and lam == 0.1) else 0.005
                out.append({"method": "spp", "lam": lam, "seed": seed, "status": "finished",
                            "penalty_step": "explicit", "searched": "lam",
                            "acc": 0.632 + 0.003 * i + spread * (seed - 1), "fwt": 0.0, "bwt": -0.45})
        return out
    limits = []
    monkeypatch.setattr(figures, "save", lambda fig, out, stem: limits.append(fig.axes[0].get_ylim()) or plt.close(fig))
    figures.lambda_curve(pd.DataFrame(rows(astray=False)), tmp_path)
    figures.lambda_curve(pd.DataFrame(rows(astray=True)), tmp_path)
    (low, high), (astray_low, astray_high) = limits
    assert low < 0.632 - 0.005 and high > 0.641 + 0.005  # every band (std 0.005) inside the axis
    assert astray_low > 0.632 - 0.1 and astray_high < 0.641 + 0.05  # the std-0.1 band is clipped
