"""Study files: parsing, validation (one line per problem), overrides. No Ray needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spp_sweep.sweep.study import StudyError, load_study, parse_study, run_settings
from tests.conftest import REPO

STUDIES = sorted((REPO / "studies").glob("*.yaml"))


def test_the_shipped_studies_exist_and_validate() -> None:
    names = {p.stem for p in STUDIES}
    assert {"lambda_robustness", "lambda_robustness_mnist", "method_comparison", "split_mnist",
            "permuted_mnist"} <= names
    for path in STUDIES:
        study = load_study(path)
        assert study.name == path.stem
        assert study.to_dict() == parse_study(study.to_dict()).to_dict()  # the saved copy reloads identically


def test_lambda_robustness_is_the_authors_set_plus_a_wide_range() -> None:
    study = load_study(REPO / "studies" / "lambda_robustness.yaml")
    spp = next(m for m in study.methods if m.method == "spp")
    lams = set(spp.space["lam"].values)
    assert {0.01, 0.1, 0.5, 1, 2, 4, 6, 8, 12} <= lams and max(lams) >= 1e4
    assert study.benchmark == "split_digits" and len(study.seeds) >= 3
    assert {m.method for m in study.methods} >= {"spp", "ewc", "mas", "si", "joint"}
    assert len({m.space["lam"].values for m in study.methods if m.space}) == 1  # one grid for all: fair scores


def test_every_problem_is_one_line_naming_its_key() -> None:
    bad = {
        "benchmark": "split_digitz",
        "methods": {"spp": {"space": {"lam": {"loguniform": [0, 10]}, "foo": [1]}}, "ewcc": {}},
        "seeds": -1, "resources": {"gpu": -1}, "colour": "red", "search": {"sampler": "bayes"},
    }
    with pytest.raises(StudyError) as error:
        parse_study(bad)
    lines = str(error.value).splitlines()
    for key in ["colour:", "benchmark:", "seeds:", "methods.spp.space.lam:", "methods.spp.space.foo:",
                "methods.ewcc:", "resources.gpu:", "search.sampler:"]:
        assert sum(line.startswith(key) for line in lines) == 1, (key, lines)
    assert len(lines) == 8


def test_bad_values_are_caught_by_building_each_methods_run_config() -> None:
    study = {"benchmark": "split_digits", "methods": {"spp": {"space": {"lam": [1, -2]}}}}
    with pytest.raises(StudyError, match=r"methods\.spp: .*lam"):
        parse_study(study)
    with pytest.raises(StudyError, match="grid sampler"):
        parse_study({"benchmark": "split_digits", "methods": {"spp": {"space": {"lam": {"loguniform": [1, 9]}}}}})
    with pytest.raises(StudyError, match="final.seeds"):
        parse_study({"benchmark": "split_digits", "methods": ["spp"], "seeds": 3, "search": {"sampler": "tpe"}})
    for fixed, message in [({"lr": float("inf")}, "lr=inf is invalid"),  # --set lr=.inf
                           ({"model_options": {"hidden": [0]}}, "widths >= 1")]:
        with pytest.raises(StudyError, match=message):
            parse_study({"benchmark": "split_digits", "methods": ["spp"], "fixed": fixed})
    with pytest.raises(StudyError, match="data_seed"):
        parse_study({"benchmark": "split_digits", "benchmark_options": {"data_seed": "abc"}, "methods": ["spp"]})


def test_the_planned_trial_count_of_each_phase() -> None:
    study = parse_study({"benchmark": "split_digits", "seeds": 1, "final": {"seeds": 3},
                         "search": {"sampler": "tpe", "num_samples": 5},
                         "methods": {"spp": {"space": {"lam": {"loguniform": [0.1, 10]}}},  # optuna: 5
                                     "finetune": {"space": {"lr": [0.1, 0.01]}}}})        # grid: 2 x 1 seed
    assert study.planned_trials() == 5 + 2 + 2 * 3  # and each method's best over 3 final seeds


def test_grid_points_and_run_settings() -> None:
    study = parse_study({
        "benchmark": "split_digits", "fixed": {"epochs": 3},
        "methods": {"spp": {"options": {"importance": "per_sample"}, "space": {"lam": [1, 4], "lr": [0.1, 0.01]}},
                    "joint": {}},
        "seeds": [0, 5],
    })
    spp, joint = study.methods
    assert len(spp.grid_points()) == 4 and joint.grid_points() == [{}]
    run = run_settings(study.study_part(), study.trial_spec(spp, {"lam": 4, "lr": 0.01}, 5))
    assert run["lr"] == 0.01 and run["epochs"] == 3 and run["seed"] == 5
    assert run["method_options"] == {"importance": "per_sample", "lam": 4}


def test_small_finite_spaces_run_on_the_grid_even_under_tpe() -> None:
    study = parse_study({"benchmark": "split_digits", "search": {"sampler": "tpe", "num_samples": 4},
                         "methods": {"finetune": {"space": {"lr": [0.1, 0.01]}},
                                     "spp": {"space": {"lam": {"loguniform": [0.1, 10]}}}}})
    finetune, spp = study.methods
    assert not study.searched_by_optuna(finetune) and study.searched_by_optuna(spp)


def test_cli_bad_study_exits_2_one_line_each_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"benchmark": "nope", "methods": {"spp": {}}, "storage": str(tmp_path / "out")}))
    proc = subprocess.run([sys.executable, "-m", "spp_sweep", "sweep", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one problem, one line
    assert "benchmark:" in proc.stderr and not (tmp_path / "out").exists()
    missing = subprocess.run([sys.executable, "-m", "spp_sweep", "sweep", str(tmp_path / "absent.yaml")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_cli_missing_data_and_unreachable_cluster_fail_in_one_line(tmp_path: Path) -> None:
    study = REPO / "studies" / "split_mnist.yaml"
    no_data = subprocess.run([sys.executable, "-m", "spp_sweep", "sweep", str(study), "--data-root",
                              str(tmp_path / "none"), "--storage", str(tmp_path / "out")],
                             capture_output=True, text=True)
    assert no_data.returncode == 2 and "MNIST not found" in no_data.stderr and "Traceback" not in no_data.stderr
    robustness = str(REPO / "studies" / "lambda_robustness.yaml")
    nobody = subprocess.run([sys.executable, "-m", "spp_sweep", "sweep", robustness,
                             "--address", "127.0.0.1:1", "--storage", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=60)
    assert nobody.returncode == 2 and "cannot reach the Ray cluster" in nobody.stderr
    assert len(nobody.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_every_shipped_study_selects_on_validation() -> None:
    """Issue 11: no shipped study lets the test set choose a configuration."""
    for path in STUDIES:
        study = load_study(path)
        assert study.metric.startswith("val_"), path.name
        assert 0 < study.fixed["validation"] < 1, path.name


def test_final_seeds_are_new_seeds_each_counted_once() -> None:
    """A count takes the smallest seeds the search did not run; a list that repeats one is
    refused in one line that names the seeds and the count that would do."""
    grid = {"benchmark": "split_digits", "seeds": 3, "methods": {"spp": {"space": {"lam": [1, 4]}}}}
    assert parse_study({**grid, "final": {"seeds": 3}}).final_seeds == (3, 4, 5)
    assert parse_study({**grid, "seeds": [0, 2], "final": {"seeds": 2}}).final_seeds == (1, 3)
    assert parse_study({**grid, "final": {"seeds": [7, 3]}}).final_seeds == (7, 3)
    with pytest.raises(StudyError, match=r"final.seeds: the search already ran 0, 2 \(seeds: 0, 1, 2\).*"
                                         r"final: \{seeds: 3\} runs 3, 4, 5"):
        parse_study({**grid, "final": {"seeds": [0, 2, 9]}})


def test_seeds_override_the_file_and_never_repeat_the_final_phases(tmp_path: Path) -> None:
    from spp_sweep.errors import ConfigError
    from spp_sweep.sweep.runner import SweepOptions, prepare_study

    grid = load_study(REPO / "studies" / "lambda_robustness.yaml")
    assert prepare_study(grid, SweepOptions(storage=str(tmp_path), seeds=5)).seeds == (0, 1, 2, 3, 4)
    with_final = parse_study({"benchmark": "split_digits", "seeds": 2, "final": {"seeds": 2},
                              "methods": {"spp": {"space": {"lam": [1, 4]}}}})
    assert with_final.final_seeds == (2, 3)
    with pytest.raises(ConfigError, match=r"--seeds 4: the final phase's seeds 2, 3 would repeat"):
        prepare_study(with_final, SweepOptions(storage=str(tmp_path), seeds=4))
    both = prepare_study(with_final, SweepOptions(storage=str(tmp_path), seeds=4, final_seeds=2))
    assert both.seeds == (0, 1, 2, 3) and both.final_seeds == (4, 5)
    tpe = load_study(REPO / "studies" / "split_mnist.yaml")
    with pytest.raises(ConfigError, match="--seeds: with sampler tpe"):
        prepare_study(tpe, SweepOptions(storage=str(tmp_path), seeds=3))


def test_final_seeds_num_samples_and_benchmark_options_override_the_file(tmp_path: Path) -> None:
    from spp_sweep.errors import ConfigError
    from spp_sweep.sweep.runner import SweepOptions, prepare_study

    study = load_study(REPO / "studies" / "split_mnist.yaml")
    prepared = prepare_study(study, SweepOptions(storage=str(tmp_path), num_samples=4, final_seeds=3,
                                                 benchmark_options=(("max_train_per_task", 100),)))
    assert study.seeds == (0,)  # the TPE search runs seed 0: the final phase takes the next three
    assert prepared.num_samples == 4 and prepared.final_seeds == (1, 2, 3)
    assert prepared.benchmark_options["max_train_per_task"] == 100
    grid_only = load_study(REPO / "studies" / "lambda_robustness.yaml")
    with pytest.raises(ConfigError, match="--final-seeds: this study has no final phase"):
        prepare_study(grid_only, SweepOptions(storage=str(tmp_path), final_seeds=3))


def test_a_validation_split_that_empties_a_task_is_one_line_before_any_trial(tmp_path: Path) -> None:
    from spp_sweep.errors import ConfigError
    from spp_sweep.sweep.runner import check_data

    study = parse_study({"benchmark": "split_digits", "benchmark_options": {"max_train_per_task": 4},
                         "fixed": {"validation": 0.1}, "methods": {"finetune": {}}, "search": {"metric": "val_acc"}})
    with pytest.raises(ConfigError, match="validation=0.1 leaves task .* with an empty training or validation part"):
        check_data(study)


def test_the_live_table_names_a_stack_by_its_members_ranges():
    from types import SimpleNamespace

    from spp_sweep.sweep.runner import _trial_name

    members = [{"method": "spp", "params": {"lam": lam, "penalty_step": "implicit"}, "seed": seed}
               for lam in (0.01, 1.0, 10000.0) for seed in (0, 1, 2)]
    stack = SimpleNamespace(config={"trial": {"method": "spp", "members": members}}, trial_id="abc_00003")
    assert _trial_name(stack) == "spp lam=0.01..1e+04 penalty_step=implicit seeds=0,1,2: 9 stacked (00003)"
    single = SimpleNamespace(config={"trial": {"method": "ewc", "params": {"lam": 30.0}, "seed": 1}},
                             trial_id="abc_00004")
    assert _trial_name(single) == "ewc lam=30 seed=1 (00004)"


def test_a_studys_plan_is_what_analysis_reads_without_the_study_parser(tmp_path):
    """plan.json carries the planned count, the metric and the searched spaces as Optuna's JSON;
    a sweep folder from before plans gets its plan from the saved study (spp-sweep report)."""
    import json

    import yaml
    from optuna.distributions import FloatDistribution, json_to_distribution

    from spp_sweep import trial_files
    from spp_sweep.cli.commands import _older_plan
    from spp_sweep.sweep.study import parse_study

    data = {"benchmark": "split_digits", "fixed": {"validation": 0.2},
            "methods": {"spp": {"space": {"lam": {"loguniform": [0.01, 100]}}}, "finetune": {}},
            "search": {"sampler": "tpe", "num_samples": 5, "metric": "val_acc"}, "final": {"seeds": 2}}
    plan = parse_study(data).plan()
    assert plan["planned_trials"] == 5 + 1 + 2 * 2 and plan["metric"] == "val_acc"
    assert json_to_distribution(json.dumps(plan["spaces"]["spp"]["lam"])) == FloatDistribution(0.01, 100, log=True)
    assert trial_files.read_plan(tmp_path) is None
    (tmp_path / trial_files.STUDY).write_text(yaml.safe_dump(data))
    assert _older_plan(tmp_path) == plan  # an older sweep: built from its study.yaml
    (tmp_path / trial_files.PLAN).write_text(json.dumps(plan))
    assert trial_files.read_plan(tmp_path) == plan and _older_plan(tmp_path) is None
    (tmp_path / trial_files.PLAN).write_text("{not json")
    assert trial_files.read_plan(tmp_path) is None


def test_a_yaml_alias_bomb_is_refused_without_building_it(tmp_path: Path) -> None:
    import tracemalloc

    levels = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for previous, name in zip("abcdefg", "bcdefgh"):  # 9^8 = 43 million values from a few hundred bytes
        levels.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join([*levels, "name: bomb", "benchmark: split_digits", "methods: [spp]"]) + "\n")
    tracemalloc.start()
    try:
        with pytest.raises(StudyError, match="aliases"):
            load_study(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20 and len(path.read_bytes()) < 1000  # 43 million values would take gigabytes


def test_every_value_of_every_dimension_is_checked_however_large_the_grid() -> None:
    # 300 λ values x 2 batch sizes: the bad batch size is the later dimension's second value
    space = {"lam": [float(i + 1) for i in range(300)], "batch_size": [32, 0]}
    with pytest.raises(StudyError, match="batch_size=0 is invalid"):
        parse_study({"benchmark": "split_digits", "methods": {"spp": {"space": space}}})
    with pytest.raises(StudyError, match="lr"):
        parse_study({"benchmark": "split_digits",
                     "methods": {"spp": {"space": {"lam": [float(i + 1) for i in range(300)], "lr": [0.1, -1.0]}}}})


def test_combination_rules_are_checked_on_every_pair_of_a_large_grid() -> None:
    # 10 x 10 x 3 x 3 x 3 = 2,700 corners: checked pair by pair; implicit step with momentum 0.5
    # (a rule joining two keys) is the third value of a later dimension
    space = {"lam": list(range(1, 11)), "lr": [0.01 * i for i in range(1, 11)], "momentum": [0.0, 0.0, 0.5],
             "batch_size": [8, 16, 32], "epochs": [1, 2, 3]}
    with pytest.raises(StudyError, match="penalty_step=implicit .* momentum=0.5"):
        parse_study({"benchmark": "split_digits",
                     "methods": {"spp": {"space": space, "options": {"penalty_step": "implicit"}}}})


@pytest.mark.parametrize("values, match", [
    ({"seeds": [0, 2**70]}, "seeds: .* from 0 to 4,294,967,295"),
    ({"final": {"seeds": [2**64]}}, "final.seeds: .* from 0 to"),
    ({"search": {"seed": 2**32}}, "search.seed: .* <= 4,294,967,295"),
    ({"search": {"num_samples": 10**12}}, "search.num_samples: .* <= 10,000"),
    ({"methods": {"spp": {"space": {key: list(range(1, 11)) for key in (
        "lr", "epochs", "batch_size", "momentum", "lr_decay", "lam", "importance_batch_size", "beta", "clip",
        "half_lambda")}}}},
     r"10,000,000,000 grid points x 1 seed\(s\) are more than 10,000 configurations"),
])
def test_seeds_and_sizes_are_bounded_before_anything_is_listed(values: dict, match: str) -> None:
    with pytest.raises(StudyError, match=match):
        parse_study({"benchmark": "split_digits", "methods": {"spp": {}}, **values})


def test_yaml_nested_hundreds_deep_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\nbenchmark: split_digits\nmethods: [spp]\ndescription: " + "[" * 600 + "]" * 600 + "\n")
    with pytest.raises(StudyError, match="nests mappings and lists more than 32 deep") as error:
        load_study(path)
    assert "\n" not in str(error.value)
    path.write_text("name: deep\nbenchmark: split_digits\nmethods: [spp]\ndescription: " + "[" * 40 + "]" * 40 + "\n")
    with pytest.raises(StudyError, match="more than 32 deep"):
        load_study(path)


def test_a_float_settings_grid_is_floats_in_every_phase() -> None:
    """λ written 12 in a study is 12.0 in the grid's trials as in the final phase's (from a table):
    filtering a tracker's runs by λ finds both; a whole-number setting stays whole."""
    from spp_sweep.sweep.recovery import point_key

    study = parse_study({"benchmark": "split_digits", "methods": {"spp": {"space": {"lam": [1, 12], "epochs": [1, 2],
                                                                                    "lr": [1, 0.1]}}}})
    space = study.methods[0].space
    assert space["lam"].values == (1.0, 12.0) and all(type(v) is float for v in space["lam"].values)
    assert space["lr"].values == (1.0, 0.1) and space["epochs"].values == (1, 2)
    old = {"method": "spp", "seed": 0, "params": {"lam": 12}}  # a trial of a sweep from before: the same point
    assert point_key(old) == point_key({**old, "params": {"lam": 12.0}})
