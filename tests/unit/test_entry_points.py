"""Methods and benchmarks from another installed package (entry points, spp_sweep/entry_points.py):
found by the CLI, by a study file and by every Ray worker. The package is a real distribution on
disk (its dist-info with entry_points.txt) put on PYTHONPATH, as `pip install` would leave it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

PLUGIN = '''
from spp_sweep.benchmarks.base import BenchmarkSpec
from spp_sweep.benchmarks.digits import split_digits
from spp_sweep.methods.base import Method


class PlugFinetune(Method):
    """Fine-tuning under another name: the smallest method a package can add."""

    name = "plug_finetune"
    summary = "fine-tuning, added by a plugin package"


def two_tasks(data_seed: int = 0):
    return split_digits(data_seed=data_seed, classes_per_task=5)


SPEC = BenchmarkSpec(name="plug_digits", description="digits 0-4 then 5-9, added by a plugin package",
                     build=two_tasks, train_defaults={"epochs": 1, "lr": 0.1, "batch_size": 32})
'''


def install(site: Path) -> dict:
    (site / "plugpkg").mkdir(parents=True)
    (site / "plugpkg" / "__init__.py").write_text(PLUGIN)
    info = site / "plugpkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugpkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [spp_sweep.methods]
        plug_finetune = plugpkg:PlugFinetune

        [spp_sweep.benchmarks]
        plug_digits = plugpkg:SPEC
        broken = plugpkg:NOTHING
        """))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def cli(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spp_sweep", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


@pytest.mark.slow  # a sweep or a script end to end: 10 s or more
def test_a_plugin_method_and_benchmark_work_in_the_cli_a_study_and_ray_workers(tmp_path: Path) -> None:
    env = install(tmp_path / "site")
    listed = cli(env, "methods", cwd=tmp_path)
    assert listed.returncode == 0 and "plug_finetune" in listed.stdout
    benchmarks = cli(env, "benchmarks", cwd=tmp_path)
    assert benchmarks.returncode == 0 and "plug_digits" in benchmarks.stdout
    assert "plugin plugpkg:NOTHING (spp_sweep.benchmarks) is left out" in benchmarks.stderr  # one line, no crash
    run = cli(env, "run", "--method", "plug_finetune", "--benchmark", "plug_digits", "--quiet", "--out", "out",
              cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-1500:]
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "plugged", "benchmark": "plug_digits", "storage": str(tmp_path / "s"),
                                     "methods": {"plug_finetune": {}, "spp": {"space": {"lam": [1.0]}}},
                                     "resources": {"cpu": 1}}))
    swept = cli(env, "sweep", str(study), "--quiet", "--no-report", cwd=tmp_path)
    assert swept.returncode == 0, swept.stderr[-1500:]
    assert "plug_finetune" in swept.stdout and "diverged 0" in swept.stdout
    assert cli({**env, "PYTHONPATH": ""}, "run", "--method", "plug_finetune", cwd=tmp_path).returncode == 2
