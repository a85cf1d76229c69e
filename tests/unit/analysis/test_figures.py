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


def test_accuracy_heatmaps_colour_trained_cells_and_leave_untrained_ones_grey_with_their_numbers(tmp_path, monkeypatch):
    """The heatmap drawn without seaborn: cells of tasks trained so far coloured on the shared
    scale, rows from the top (after task 1 first), each annotated, dark text on bright cells and
    white on dark ones; a task not trained yet left to the grey ground with its number in grey."""
    cells = [("a", 1, 1, 1.0), ("a", 1, 2, 0.4), ("a", 2, 1, 0.9), ("a", 2, 2, 0.95)]
    matrices = pd.DataFrame(cells, columns=["trial_id", "after_task", "task", "accuracy"])
    best = pd.DataFrame({"trial_id": ["a"], "method": ["spp"], "config": ["lam=1"]})
    drawn = []

    def keep(fig, out, stem):
        ax = fig.axes[0]
        mesh = ax.collections[0]
        drawn.append((mesh.get_array(), ax.get_ylim(), [t.get_text() for t in ax.get_yticklabels()],
                      {(round(t.get_position()[0], 1), round(t.get_position()[1], 1)): (t.get_text(), t.get_color())
                       for t in ax.texts}))
        plt.close(fig)
        return out / f"{stem}.png"

    monkeypatch.setattr(figures, "save", keep)
    figures.accuracy_heatmaps(matrices, best, tmp_path)
    values, ylim, rows, texts = drawn[0]
    assert list(values.mask.ravel()) == [False, True, False, False]  # after task 1, task 2: not trained
    assert ylim == (2.0, 0.0) and rows == ["1", "2"]  # the first row at the top
    assert texts[(0.5, 0.5)] == ("1.00", ".15")  # the scale's top (bright yellow): dark text
    assert texts[(0.5, 1.5)] == ("0.90", "w")  # its bottom (0.9: dark purple): white text
    assert texts[(1.5, 0.5)] == ("0.40", "#888888")  # untrained: its number, grey


def test_the_same_importance_table_is_drawn_once_and_a_changed_one_again(tmp_path, monkeypatch):
    """recommend draws the search's importance figure for its report and for the recommendation:
    the second gets the first one's files; a table that differs is drawn anew."""
    table = pd.DataFrame({"method": ["spp", "spp"], "hyperparameter": ["lam", "lr"], "importance": [0.7, 0.3],
                          "trials": [8, 8], "evaluator": ["fANOVA (Optuna)"] * 2})
    first = figures.hyperparameter_importance(table, tmp_path / "report")
    draws = []
    save = figures.save
    monkeypatch.setattr(figures, "save", lambda *args: draws.append(args[2]) or save(*args))
    second = figures.hyperparameter_importance(table, tmp_path / "recommendation")
    assert draws == [] and second.read_bytes() == first.read_bytes()
    assert (tmp_path / "recommendation" / "hyperparameter_importance.pdf").exists()
    figures.hyperparameter_importance(table.assign(importance=[0.2, 0.8]), tmp_path / "other")
    assert draws == ["hyperparameter_importance"]


def test_a_layer_of_one_weight_is_drawn_as_a_line_at_its_value_not_left_empty(tmp_path, monkeypatch):
    """A decoder's output bias has one weight: no density exists for it, and seaborn's KDE leaves
    the panel empty (with a warning), which reads as nothing there. It gets a dotted line in the
    method's colour at its value, and the panel says what the line is."""
    import warnings

    import numpy as np

    from analysis.style import look

    rng = np.random.default_rng(0)
    long = pd.concat([pd.DataFrame({"method": method, "layer": "trunk.0.weight", "value": rng.random(50)})
                      for method in ("spp", "mas")] +
                     [pd.DataFrame({"method": ["spp"], "layer": ["decoder.5.bias"], "value": [0.25]})],
                     ignore_index=True)
    drawn = {}

    def keep(fig, out, stem):
        drawn[stem] = {ax.get_title(): ax for ax in fig.axes}
        return out / f"{stem}.png"

    monkeypatch.setattr(figures, "save", keep)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # seaborn's "Dataset has 0 variance" is handled, not raised
        figures.importance_densities(long, tmp_path, per_layer=True)
    panel = drawn["importance_by_layer"]["layer = decoder.5.bias"]
    lines = [line for line in panel.get_lines() if line.get_linestyle() == ":"]
    assert len(lines) == 1 and matplotlib.colors.same_color(lines[0].get_color(), look("spp").colour)
    spp_max = long[long["method"] == "spp"]["value"].max()
    assert np.isclose(lines[0].get_xdata()[0], np.log10(0.25 / spp_max))
    assert any("SPP: its one value at" in text.get_text() for text in panel.texts)
    other = drawn["importance_by_layer"]["layer = trunk.0.weight"]
    assert not [line for line in other.get_lines() if line.get_linestyle() == ":"] and not other.texts
    plt.close("all")


def test_titles_count_distinct_seeds_not_rows(tmp_path, monkeypatch):
    """A seed that two phases trained alike is one observation: the λ curve's title counts 3
    seeds, not the 6 rows of a grid whose final phase repeated them; Figure 7a's title says n."""
    rows = [{"method": "spp", "lam": lam, "seed": seed, "status": "finished", "penalty_step": "explicit",
             "searched": "lam", "acc": 0.8 + 0.01 * seed, "fwt": 0.0, "bwt": -0.1, "phase": phase}
            for lam in (0.1, 1.0) for seed in range(3) for phase in ("grid", "final")]
    titles = []
    monkeypatch.setattr(figures, "save", lambda fig, out, stem: titles.append(
        fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title()) or plt.close(fig))
    figures.lambda_curve(pd.DataFrame(rows), tmp_path)
    assert titles[-1].endswith("mean ± std over 3 seeds")
    matrices = pd.DataFrame([(f"t{s}", 1, 1, 0.9) for s in range(5)], columns=["trial_id", "after_task", "task",
                                                                                 "accuracy"])
    best = pd.DataFrame({"trial_id": [f"t{s}" for s in range(5)], "method": "spp", "config": "", "seed": range(5)})
    figures.running_accuracy(matrices, best, tmp_path)
    assert titles[-1] == "mean over 5 seeds; band: ± 1 std over seeds"


def test_every_built_in_method_has_its_own_colour_and_name() -> None:
    """One colour per method in every figure: each registered method has a look of its own (a
    fallback by name gave ER and DER++ the same teal), and no two share a colour."""
    from analysis.style import LOOKS
    from spp_sweep.methods import METHODS

    assert set(METHODS) <= set(LOOKS)
    colours = [LOOKS[m].colour for m in METHODS]
    assert len(set(colours)) == len(colours)


def test_a_buffer_size_sweep_is_drawn_against_memory_with_its_own_axis_name(tmp_path, monkeypatch):
    rows = [{"method": "er", "memory": memory, "seed": seed, "status": "finished", "searched": "memory",
             "acc": 0.8 + 0.01 * i, "fwt": 0.0, "bwt": -0.05 + 0.01 * i}
            for i, memory in enumerate((1, 10, 100)) for seed in range(2)]
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, out, stem: drawn.append(
        (stem, fig.axes[1].get_xlabel(), fig._suptitle.get_text())) or plt.close(fig))
    figures.lambda_curve(pd.DataFrame(rows), tmp_path, parameter="memory", stem="memory_curve",
                         heading="Replay buffer size", axis="memory")
    assert drawn == [("memory_curve", "memory", "Replay buffer size: mean ± std over 2 seeds")]
    assert figures.lambda_curve(pd.DataFrame(rows), tmp_path) is None  # no λ swept: no λ curve


def test_a_method_whose_mean_lies_on_anothers_says_so_in_the_legend(tmp_path, monkeypatch):
    """Regularisers at an lr that barely moves the network end 0.01 points from fine-tuning (split
    MNIST, one shared head, one epoch): not the same values, yet one line to the eye. A curve
    within 2% of the axis' span of an earlier one at every task (its markers overlap) names it;
    one further apart does not."""
    levels = {"ft": 0.0, "ewc": 0.0001, "si": 0.05}  # si: 5 points above, on an axis of 0.15
    cells = [(trial, after, task, 0.9 - 0.1 * (after - 1) + shift)
             for trial, shift in levels.items() for after in (1, 2) for task in (1, 2) if task <= after]
    matrices = pd.DataFrame(cells, columns=["trial_id", "after_task", "task", "accuracy"])
    best = pd.DataFrame({"trial_id": list(levels), "method": ["finetune", "ewc", "si"],
                         "config": ["", "lam=1", "lam=2"]})
    legends = []
    monkeypatch.setattr(figures, "save", lambda fig, out, stem: legends.append(
        [t.get_text() for t in fig.axes[0].get_legend().get_texts()]) or plt.close(fig))
    figures.running_accuracy(matrices, best, tmp_path)
    assert set(legends[0]) == {"EWC (lam=1)", "Fine-tuning (≤ 0.01 points from EWC at every task, drawn over it)",
                               "SI (lam=2)"}


def test_one_seeds_running_accuracy_claims_no_mean_or_band(tmp_path, monkeypatch):
    """A 1-seed sweep (the penalty-step grids) has no mean over seeds and no spread to draw."""
    matrices = pd.DataFrame([("ft", 1, 1, 0.9), ("ft", 2, 1, 0.8), ("ft", 2, 2, 0.9)],
                            columns=["trial_id", "after_task", "task", "accuracy"])
    titles = []
    monkeypatch.setattr(figures, "save",
                        lambda fig, out, stem: titles.append(fig.axes[0].get_title()) or plt.close(fig))
    best = pd.DataFrame({"trial_id": ["ft"], "method": ["finetune"], "seed": [0]})
    figures.running_accuracy(matrices, best, tmp_path)
    assert titles == ["one seed (no spread shown)"]


def test_methods_each_at_one_lambda_draw_no_curve(tmp_path):
    """A final study runs each method at its chosen λ (SPP at 1, MAS at 0.01): two λ in the
    sweep, yet no method has a curve, and a ± std band at one point has no width to show."""
    rows = [{"method": method, "lam": lam, "seed": seed, "status": "finished", "searched": "lam",
             "acc": 0.8 + 0.01 * seed, "fwt": 0.0, "bwt": -0.1}
            for method, lam in (("spp", 1.0), ("mas", 0.01)) for seed in range(3)]
    assert figures.lambda_curve(pd.DataFrame(rows), tmp_path) is None
    rows += [{**rows[0], "lam": 2.0}]  # SPP at a second λ: now a curve
    assert figures.lambda_curve(pd.DataFrame(rows), tmp_path) is not None


def test_a_survivors_mean_beyond_the_limits_sits_at_the_edge_with_its_value(tmp_path, monkeypatch):
    """One seed of λ = 300 diverged and two ended at chance (0.50) while the curve runs 0.94-0.98:
    the limits stay the curve's, and the hollow point is drawn at the bottom edge with its value,
    not left off the panel."""
    accs = {1.0: 0.98, 10.0: 0.97, 100.0: 0.94, 300.0: 0.50}
    rows = [{"method": "lwf", "lam": lam, "seed": seed, "searched": "lam", "penalty_step": None,
             "status": "diverged" if lam == 300.0 and seed == 1 else "finished",
             "acc": float("nan") if lam == 300.0 and seed == 1 else acc + 0.002 * seed,
             "fwt": 0.0, "bwt": -0.01}
            for lam, acc in accs.items() for seed in range(3)]
    drawn = []

    def keep(fig, out, stem):
        ax = fig.axes[0]
        drawn.append((ax.get_ylim(), [t.get_text() for t in ax.texts],
                      [c.get_offsets().tolist() for c in ax.collections if len(c.get_offsets())]))
        plt.close(fig)

    monkeypatch.setattr(figures, "save", keep)
    figures.lambda_curve(pd.DataFrame(rows), tmp_path)
    (bottom, top), texts, offsets = drawn[0]
    assert bottom > 0.9 and texts == ["0.502"]  # seeds 0 and 2: 0.500 and 0.504
    assert [[300.0, bottom]] in offsets  # the hollow marker, at the edge


def test_a_sweep_where_nothing_diverged_says_so_in_the_strip_and_keys_no_divergence_marks(tmp_path, monkeypatch):
    """An empty "diverged" strip reads as missing data: it says no seed diverged, and the legend
    keys only marks that are drawn; one diverged seed brings the keys back and the note goes."""
    def rows(one_dies: bool) -> list[dict]:
        return [{"method": "spp", "lam": lam, "seed": seed, "searched": "lam", "penalty_step": "explicit",
                 "status": "diverged" if one_dies and lam == 10.0 and seed == 0 else "finished",
                 "acc": 0.9 - 0.01 * i + 0.002 * seed, "fwt": 0.0, "bwt": -0.01}
                for i, lam in enumerate((0.1, 1.0, 10.0)) for seed in range(3)]
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, out, stem: drawn.append((
        [t.get_text() for t in fig.axes[1].texts],
        [t.get_text() for t in fig.legends[0].get_texts()])) or plt.close(fig))
    figures.lambda_curve(pd.DataFrame(rows(one_dies=False)), tmp_path)
    figures.lambda_curve(pd.DataFrame(rows(one_dies=True)), tmp_path)
    (calm_strip, calm_keys), (strip, keys) = drawn
    assert calm_strip == ["no seed diverged"] and not any("diverged" in key for key in calm_keys)
    assert strip == ["1/3"] and "all seeds diverged" in keys


def test_a_figure_drawn_twice_gives_the_same_files(tmp_path):
    """A report redrawn from the same results leaves its committed PNG and PDF byte for byte."""
    drawn = []
    for folder in ("a", "b"):
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [0.9, 0.8, 0.85])
        figures.save(fig, tmp_path / folder, "curve")
        drawn.append([(tmp_path / folder / f"curve.{ext}").read_bytes() for ext in ("png", "pdf")])
    assert drawn[0] == drawn[1] and b"/CreationDate" not in drawn[0][1]  # a date would differ by the second
