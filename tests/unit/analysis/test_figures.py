"""Figures that would mislead: a curve hidden under another's."""

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
