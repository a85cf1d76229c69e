"""The continual VAE (section 4.2.4, Figure 5): the ELBO by hand, the faces readers on tiny
files in the real on-disk formats, a checkpoint round trip, lower-is-better ranking and the
embedded study end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.errors import ConfigError, DataError
from spp_sweep.models.vae import negative_elbo


def test_negative_elbo_by_hand() -> None:
    # one image of two pixels x = (1, 0), decoder logits (0, ln 3): p = (0.5, 0.75)
    # BCE = -ln 0.5 - ln(1 - 0.75) = ln 2 + ln 4; one latent unit with mu = 1, logvar = 0:
    # KL = -0.5 (1 + 0 - 1 - 1) = 0.5
    recon = torch.tensor([[[[0.0, math.log(3.0)]]]])
    x = torch.tensor([[[[1.0, 0.0]]]])
    value = negative_elbo(recon, x, torch.tensor([[1.0]]), torch.tensor([[0.0]]))
    assert value.item() == pytest.approx(math.log(2) + math.log(4) + 0.5)


def write_faces(root: Path, n_celeba: int = 6, n_anime: int = 5) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    lines = []
    for i in range(n_celeba):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(rng.integers(0, 255, (218, 178, 3), dtype=np.uint8)).save(folder / name)
        lines.append(f"{name} {[0, 0, 0, 1, 2, 2][i % 6]}")
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    anime = root / "anime_faces" / "batch1"
    anime.mkdir(parents=True)
    for i in range(n_anime):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(anime / f"{i}.png")


def test_faces_readers_on_tiny_files_in_the_real_formats(tmp_path: Path) -> None:
    from spp_sweep.benchmarks import build_benchmark

    write_faces(tmp_path)
    benchmark = build_benchmark("faces_to_anime", {"data_root": str(tmp_path), "image_size": 16,
                                                   "test_fraction": 0.4})
    celeba, anime = benchmark.tasks
    assert celeba.x_train.shape == (3, 3, 16, 16) and celeba.x_test.shape == (2, 3, 16, 16)  # partitions 0 and 2
    assert anime.x_train.shape == (3, 3, 16, 16) and anime.x_test.shape == (2, 3, 16, 16)  # 40% of 5 for test
    assert 0 <= float(celeba.x_train.min()) and float(celeba.x_train.max()) <= 1
    assert benchmark.objective == "elbo"
    with pytest.raises(DataError, match="CelebA not found"):
        build_benchmark("faces_to_anime", {"data_root": str(tmp_path / "nothing")})


def test_a_vae_run_on_faces_and_its_checkpoint_continues_to_the_same_matrix(tmp_path: Path) -> None:
    from tests.conftest import resumed_after_task

    write_faces(tmp_path)
    config = RunConfig(method="spp", benchmark="faces_to_anime", epochs=2, batch_size=2,
                       benchmark_options={"data_root": str(tmp_path), "image_size": 16},
                       model_options={"latent": 4, "channels": [4, 8], "fc": 16})
    result = Experiment(config).run()
    assert result.status == "finished" and not result.higher_is_better
    assert len(result.pictures) == 2 and result.pictures[0]["samples"].shape[1:] == (3, 16, 16)
    again = resumed_after_task(config, 0)
    assert again.accuracy_matrix == result.accuracy_matrix  # the same loss matrix, to the last digit
    torch.testing.assert_close(again.pictures[1]["samples"], result.pictures[1]["samples"])


def test_methods_without_a_generative_reading_refuse_before_training() -> None:
    with pytest.raises(ConfigError, match="method 'ewc' is defined for classification only.*use one of: spp"):
        RunConfig(method="ewc", benchmark="digit_domains").resolved()
    with pytest.raises(ConfigError, match="method 'lwf'"):
        RunConfig(method="lwf", benchmark="digit_domains").resolved()
    with pytest.raises(ConfigError, match="spp: signal=elbo needs a generative benchmark"):
        RunConfig(method="spp", benchmark="split_digits", method_options={"signal": "elbo"}).resolved()


def test_lower_is_better_ranks_the_smallest_loss_first() -> None:
    from analysis.robustness import robustness_scores
    from analysis.tables import best_configs

    rows = [{"method": "spp", "lam": lam, "seed": s, "status": "finished", "acc": loss, "searched": "lam",
             "higher_is_better": False, "phase": "grid", "seconds": 1.0}
            for lam, loss in {1: 30.0, 10: 25.0, 100: 25.1, 1000: 40.0}.items() for s in (0, 1)]
    rows += [{**rows[0], "lam": 10000, "status": "diverged", "acc": math.nan}]
    trials = pd.DataFrame(rows)
    assert best_configs(trials).set_index("method").loc["spp", "lam"] == 10
    scores = robustness_scores(trials, higher_is_better=False).set_index("method")
    # within 1% of 25.0: 25.1 yes, 30 no -> λ 10 .. 100
    assert scores.loc["spp", "best_lam"] == 10 and scores.loc["spp", "stable_high"] == 100
    assert scores.loc["spp", "best_score"] == pytest.approx(25.0)


@pytest.mark.slow  # a sweep or a script end to end: 10 s or more
def test_the_continual_vae_study_writes_figure_5(tmp_path, ray_local) -> None:
    import dataclasses

    from analysis.report import write_report
    from spp_sweep.sweep.runner import SweepOptions, run_sweep
    from spp_sweep.sweep.study import load_study
    from tests.conftest import REPO

    study = load_study(REPO / "studies" / "continual_vae.yaml")
    methods = tuple(dataclasses.replace(m, space={k: dataclasses.replace(d, values=d.values[:1])
                                                  for k, d in m.space.items()}) for m in study.methods)
    study = dataclasses.replace(study, storage=str(tmp_path), seeds=(0,), methods=methods,
                                fixed={**study.fixed, "epochs": 2})
    outcome = run_sweep(study, SweepOptions(verbose=0))
    report = write_report(outcome.root, tmp_path / "report").read_text()
    assert "lower is better" in report and "## What the generator keeps of task 1 (Figure 5)" in report
    assert (tmp_path / "report" / "figure5_generations.png").read_bytes()[:4] == b"\x89PNG"
    trials = pd.read_csv(tmp_path / "report" / "trials.csv")
    assert not trials["higher_is_better"].any() and set(trials["method"]) == {"finetune", "spp", "mas"}


@pytest.mark.slow  # a sweep or a script end to end: 10 s or more
def test_a_stacked_vae_sweep_writes_each_members_pictures(tmp_path, ray_local) -> None:
    """Two λ of SPP train as one stacked trial (the VAE on 8×8 digits stacks on a CPU; `stack: 2`
    keeps auto from splitting the pair over this machine's two slots); each member's Figure-5
    pictures reach the report as a separate trial's would."""
    import dataclasses

    from analysis.load import load_trials
    from analysis.report import write_report
    from spp_sweep.sweep.runner import SweepOptions, run_sweep
    from spp_sweep.sweep.study import load_study
    from tests.conftest import REPO

    study = load_study(REPO / "studies" / "continual_vae.yaml")
    spp = next(m for m in study.methods if m.method == "spp")
    spp = dataclasses.replace(spp, space={k: dataclasses.replace(d, values=d.values[:2]) for k, d in spp.space.items()})
    study = dataclasses.replace(study, storage=str(tmp_path), seeds=(0,), methods=(spp,), stack=2,
                                fixed={**study.fixed, "epochs": 2})
    outcome = run_sweep(study, SweepOptions(verbose=0))
    trials = load_trials(outcome.root)
    assert len(trials) == 2 and set(trials["stack_members"]) == {2} and set(trials["status"]) == {"finished"}
    write_report(outcome.root, tmp_path / "report")
    assert (tmp_path / "report" / "figure5_generations.png").read_bytes()[:4] == b"\x89PNG"
    members = sorted(Path(outcome.root).rglob("member*/pictures.npz"))
    assert len(members) == 2
    first, second = (np.load(path) for path in members)
    assert first.files == second.files and not np.array_equal(first["task1/reconstructions"],
                                                             second["task1/reconstructions"])
