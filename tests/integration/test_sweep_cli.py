"""`spp-sweep sweep` as a user runs it: a killed driver, --resume, and the report at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from analysis.load import load_trials, read_reports


def finished_trials(root: Path) -> int:
    """Trials whose reports say finished, polled while the sweep runs: Ray Tune deletes old
    checkpoint folders as it goes, so a walk that meets a vanished one counts 0 and is retried."""
    try:
        return sum(any(r.get("status") == "finished" for r in read_reports(p.parent))
                   for p in root.rglob("params.json"))
    except FileNotFoundError:
        return 0


def trained_tasks(folder: Path) -> list[int]:
    """The tasks a trial trained, with those of the trial it continued where the sweep's saved
    state was unreadable and the unfinished trial moved aside (config ``resume_from``)."""
    before = json.loads((folder / "params.json").read_text())["trial"].get("resume_from")
    earlier = trained_tasks(Path(before)) if before else []
    return earlier + [r["task"] for r in read_reports(folder) if not r.get("replayed")]


LAMS = [0.5, 1.0, 2.0, 4.0, 6.0, 8.0]


@dataclass(frozen=True)
class KilledSweep:
    """A sweep whose driver was killed (SIGKILL) after two finished trials, then resumed."""

    sampler: str
    root: Path
    command: list[str]
    resumed: subprocess.CompletedProcess


def kill_and_resume(storage: Path, sampler: str) -> KilledSweep:
    space = {"lam": LAMS} if sampler == "grid" else {"lam": {"loguniform": [0.5, 8.0]}}
    # one configuration per trial: the tests count and cut trial folders one configuration at a
    # time (stacked trials are killed and cut in tests/integration/test_stacked_sweep.py)
    study = {"name": "killed", "benchmark": "split_digits", "fixed": {"epochs": 4}, "stack": "off",
             "methods": {"spp": {"space": space}}, "seeds": 1, "max_concurrent": 1,
             "search": {"sampler": sampler, "seed": 1, "num_samples": len(LAMS)},
             "resources": {"cpu": 1}, "storage": str(storage / "sweeps")}
    path = storage / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    command = [sys.executable, "-m", "spp_sweep", "sweep", str(path), "--quiet"]
    log = storage / "driver.log"  # the killed driver's stderr, shown where the kill came at the wrong time
    with log.open("w") as stderr:
        driver = subprocess.Popen([*command, "--no-report"], stdout=subprocess.DEVNULL, stderr=stderr)
    root = storage / "sweeps" / "killed"
    deadline = time.monotonic() + 240
    while finished_trials(root) < 2 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    assert driver.poll() is None, f"the sweep ended before it could be interrupted: {log.read_text()[-2000:]}"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    finished = finished_trials(root)
    assert 2 <= finished < len(LAMS), f"killed after {finished} finished trials: {log.read_text()[-2000:]}"
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return KilledSweep(sampler, root, command, resumed)


@pytest.fixture(scope="module")
def killed_grid(tmp_path_factory: pytest.TempPathFactory) -> KilledSweep:
    return kill_and_resume(tmp_path_factory.mktemp("grid"), "grid")


@pytest.fixture(scope="module")
def killed_tpe(tmp_path_factory: pytest.TempPathFactory) -> KilledSweep:
    return kill_and_resume(tmp_path_factory.mktemp("tpe"), "tpe")


@pytest.mark.parametrize("killed", ["killed_grid", "killed_tpe"])
def test_a_killed_driver_resumes_with_every_trial_exactly_once(killed: str, request: pytest.FixtureRequest) -> None:
    sweep: KilledSweep = request.getfixturevalue(killed)
    trials = load_trials(sweep.root)
    assert len(trials) == len(LAMS) and trials["trial_id"].is_unique
    if sweep.sampler == "grid":
        assert sorted(trials["lam"]) == LAMS
    assert set(trials["status"]) == {"finished"}, trials[["status", "error"]].to_string()


@pytest.mark.parametrize("killed", ["killed_grid", "killed_tpe"])
def test_no_task_of_a_resumed_trial_is_trained_twice(killed: str, request: pytest.FixtureRequest) -> None:
    sweep: KilledSweep = request.getfixturevalue(killed)
    for trial_path in load_trials(sweep.root)["path"]:
        tasks = trained_tasks(Path(trial_path))
        last = read_reports(Path(trial_path))[-1]
        # a task whose report the killed driver never logged but whose checkpoint it wrote is not
        # retrained, so its line may be missing; the last task was reached: trained here, or
        # trained before the kill and its finished result replayed from the checkpoint (grid
        # phases snapshot Ray's state every few seconds, so a trial that finished just before the
        # kill is restored as running and replays)
        reached = tasks + ([last["task"]] if last.get("replayed") and last.get("status") == "finished" else [])
        assert tasks == sorted(set(tasks)) and reached[-1] == 5, (trial_path, tasks)
        assert len(last["accuracy_matrix"]) == 5


@pytest.mark.parametrize("killed", ["killed_grid", "killed_tpe"])
def test_a_resumed_sweep_is_quiet_and_ends_with_its_report(killed: str, request: pytest.FixtureRequest) -> None:
    sweep: KilledSweep = request.getfixturevalue(killed)
    assert "best configuration per method" in sweep.resumed.stdout
    chatter = sweep.resumed.stdout + sweep.resumed.stderr  # --quiet: no Tune boxes, no INFO lines from Ray or Optuna
    assert "Configuration for experiment" not in chatter and " INFO " not in chatter and "[I " not in chatter
    assert "Token authentication" not in chatter and "Failed to fetch metrics" not in chatter
    report = sweep.root / "report" / "report.md"
    assert report.exists() and "lambda_robustness.png" in report.read_text()
    # the code of each start: the resume ran the same code as the killed start, so one entry, named
    code = json.loads((sweep.root / "plan.json").read_text())["code"]
    assert len(code) == 1 and code[0]["spp_sweep"] and "Trained with spp-sweep" in report.read_text()
    assert (sweep.root / "report" / "lambda_robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_resumed_sweep_writes_the_records_of_an_uninterrupted_one(killed_grid: KilledSweep) -> None:
    # the files, not only the metrics: each trial's records as an uninterrupted sweep's
    undisturbed = subprocess.run([*killed_grid.command, "--no-report", "--name", "undisturbed"],
                                 capture_output=True, text=True, timeout=600)
    assert undisturbed.returncode == 0, undisturbed.stderr[-2000:]
    resumed_records = final_records(killed_grid.root)
    assert resumed_records == final_records(killed_grid.root.parent / "undisturbed")
    assert sorted(resumed_records) == [(lam, 0) for lam in LAMS]


def final_records(root: Path) -> dict[tuple[float, int], dict]:
    """Each trial's result.json from its final checkpoint, by (λ, seed), without what is the
    clock's (seconds) rather than the run's, and its arrays' names and values."""
    import numpy as np

    found = {}
    for params in root.glob("grid/*/params.json"):
        spec = json.loads(params.read_text())["trial"]
        final = [c for c in sorted(params.parent.glob("checkpoint_*")) if (c / "result.json").exists()]
        assert len(final) == 1, params.parent  # one finished record per trial, none written twice
        record = json.loads((final[0] / "result.json").read_text())
        record.pop("seconds")
        arrays = sorted(final[0].glob("*.npz"))
        record["arrays"] = {f.name: {k: v.tolist() for k, v in np.load(f).items()} for f in arrays}
        found[(spec["params"]["lam"], spec["seed"])] = record
    return found


def test_ctrl_c_stops_the_sweep_without_starting_more_and_resume_finishes_it(tmp_path: Path) -> None:
    # stack: off, so that there are trials left to not start (stacked, the five λ are one trial)
    study = {"name": "ctrlc", "benchmark": "split_digits", "fixed": {"epochs": 4}, "max_concurrent": 1, "stack": "off",
             "methods": {"spp": {"space": {"lam": [0.5, 1.0, 2.0, 4.0, 6.0]}}}, "storage": str(tmp_path)}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    command = [sys.executable, "-m", "spp_sweep", "sweep", str(path), "--quiet", "--no-report"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = tmp_path / "ctrlc"
    deadline = time.monotonic() + 240
    while finished_trials(root) < 1 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130 and "--resume" in stderr and "Traceback" not in stderr
    # no further phase started (provenance.json: the mark that lets --resume trust the folder;
    # plan.json: what analysis reads of the study; phase_times.json: the driver's clock per phase;
    # .lock: the one-writer lock, released)
    assert sorted(p.name for p in root.iterdir()) == [".lock", "grid", "phase_times.json", "plan.json",
                                                      "provenance.json", "study.yaml"]
    assert (root / ".lock").read_text() == ""
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "not as this account signed" not in resumed.stderr  # Ctrl+C signed Ray's state: restored by Ray
    assert sorted(load_trials(root)["lam"]) == [0.5, 1.0, 2.0, 4.0, 6.0]


def test_report_command_on_a_sweep_folder_and_bad_folders(tmp_path: Path) -> None:
    missing = subprocess.run([sys.executable, "-m", "spp_sweep", "report", str(tmp_path / "nothing")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "not a folder" in missing.stderr and "Traceback" not in missing.stderr
    empty = subprocess.run([sys.executable, "-m", "spp_sweep", "report", str(tmp_path)], capture_output=True, text=True)
    assert empty.returncode == 2 and "no Ray Tune trials" in empty.stderr
    assert json.dumps(sorted(os.listdir(tmp_path))) == "[]"  # nothing half-written


def test_ray_tunes_progress_is_a_compact_table_and_the_summary_ends_the_log(tmp_path: Path) -> None:
    study = {"name": "progress", "benchmark": "split_digits", "fixed": {"epochs": 1}, "resources": {"cpu": 1},
             "methods": {"spp": {"space": {"lam": [0.5, 1.0, 2.0]}}, "finetune": {}}, "storage": str(tmp_path)}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    done = subprocess.run([sys.executable, "-m", "spp_sweep", "sweep", str(path), "--no-report"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stdout + done.stderr
    assert "== Status ==" in log and "Number of trials: 2/2" in log  # Tune's progress, as users expect
    # the three λ train as one stacked trial, fine-tuning alone; the sweep says so
    assert "grid: stacking: 4 configurations in 2 trials (1 stack of 3 members, 1 alone)" in log
    assert "spp lam=0.5..2 seeds=0: 3 stacked" in log  # the live table names what a stack holds
    assert "driver_artifacts" not in log and "ACC so far (stack: best member)" in log
    assert "started with configuration" not in log and "completed after" not in log  # no box per trial
    assert len(log.splitlines()) < 80
    tail = done.stdout.rstrip().splitlines()
    assert tail[-1].startswith("results: ") and any(line.startswith("  spp ") for line in tail[-5:])


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 20 MB tmpfs with about 1.2 MB left free: mounted here where the tests run as root (CI
    does), or an empty small filesystem a user mounted and named in $SPP_TEST_SMALL_DISK."""
    given = os.environ.get("SPP_TEST_SMALL_DISK")
    disk = Path(given) if given else tmp_path / "disk"
    mounted = False
    if not given:
        disk.mkdir()
        mount = ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)]
        if subprocess.run(mount, capture_output=True).returncode:
            pytest.skip("a small full disk is needed: mounting a 20 MB tmpfs needs root; run the tests as root, "
                        "or mount one yourself (sudo mount -t tmpfs -o size=20m tmpfs DIR) and set "
                        "SPP_TEST_SMALL_DISK=DIR (the full-disk recovery is also tested without one in "
                        "tests/unit/sweep/test_recovery.py)")
        mounted = True
    try:
        free_kib = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize // 1024
        with open(disk / "filler", "wb") as filler:
            filler.write(b"\0" * ((free_kib - 1200) * 1024))
        yield disk
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)
        else:  # a user's disk: leave it as it was given
            (disk / "filler").unlink(missing_ok=True)
            shutil.rmtree(disk / "full", ignore_errors=True)


def test_a_full_disk_stops_the_sweep_in_one_line_and_resume_finishes_it_once_there_is_space(
        tmp_path: Path, small_disk: Path) -> None:
    study = {"name": "full", "benchmark": "split_digits", "fixed": {"epochs": 2}, "stack": "off",
             "methods": {"spp": {"space": {"lam": [0.5, 1.0, 2.0, 4.0]}}}, "seeds": 2, "resources": {"cpu": 1}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    command = [sys.executable, "-m", "spp_sweep", "sweep", str(path), "--quiet", "--no-report", "--storage",
               str(small_disk)]
    full = subprocess.run(command, capture_output=True, text=True, timeout=600)
    ours = [line for line in full.stderr.splitlines() if line.startswith("spp-sweep:")]
    assert full.returncode == 2 and len(ours) == 1 and "the disk is full" in ours[0] and "--resume" in ours[0]
    assert "EOFError" not in full.stderr
    # stopped at the first failure the full disk caused: no trial was retried (Ray Tune alone retries
    # each max_failures times and starts every pending one)
    errors = [f.read_text(errors="replace") for f in (small_disk / "full").rglob("error.txt")]
    assert not any("Failure # 2" in text for text in errors), errors
    (small_disk / "filler").unlink()
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials = load_trials(small_disk / "full")
    assert sorted(zip(trials["lam"], trials["seed"])) == [(lam, s) for lam in (0.5, 1.0, 2.0, 4.0) for s in (0, 1)]
    assert set(trials["status"]) == {"finished"} and "damaged" not in resumed.stderr
    for folder in map(Path, trials["path"]):  # nothing there looks complete and is not
        empty = [str(f) for f in folder.rglob("*") if f.is_file() and f.suffix in (".json", ".pt")
                 and f.stat().st_size == 0]
        assert not empty, empty


def test_compute_spent_counts_the_command_from_its_first_line(tmp_path: Path) -> None:
    """compute.csv's rows: the command's start-up, each phase, Ray's shut-down, all from the
    driver's own clock, one start-up span per command; the spans together last no longer than the
    command did as this test measured it, which a start-up span from the process's creation time
    (Linux rounds it through a boot time in whole seconds) would break. Durations on the monotonic
    clock (a wall clock set meanwhile changes neither side); no duration is asserted."""
    import json

    from analysis.selection import compute_spent

    study = {"name": "clocked", "benchmark": "split_digits", "fixed": {"epochs": 2},
             "methods": {"spp": {"space": {"lam": [1.0, 4.0]}}, "finetune": {}}, "final": {"seeds": 2},
             "seeds": 1, "resources": {"cpu": 1}, "storage": str(tmp_path)}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    launched = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "spp_sweep", "sweep", str(path), "--quiet", "--no-report"],
                          capture_output=True, text=True, timeout=600)
    took = time.monotonic() - launched
    assert done.returncode == 0, done.stderr[-2000:]
    spent = compute_spent(load_trials(tmp_path / "clocked"), tmp_path / "clocked")
    assert list(spent["phase"]) == ["start-up", "grid", "final", "shut-down"] and set(spent["wall_from"]) == {"driver"}
    assert spent.loc[0, "trials"] == 0 and (spent["wall_seconds"] > 0).all()
    spans = [span for phase in json.loads((tmp_path / "clocked" / "phase_times.json").read_text()).values()
             for span in phase]
    assert len(json.loads((tmp_path / "clocked" / "phase_times.json").read_text())["start-up"]) == 1
    assert all(start <= end for start, end in spans) and sum(end - start for start, end in spans) <= took


def test_recommends_compute_counts_its_sweeps_and_reports_from_its_first_line(tmp_path: Path) -> None:
    """compute.csv of `spp-sweep recommend`: every sweep's start-up and phases, then the reports
    written after training; Ray's session ends beside the reports, inside their row (no shut-down
    row counts it twice). The rows together last no longer than the command did as this test
    measured it (monotonic clocks on both sides); no duration is asserted."""
    import json

    import numpy as np
    import pandas as pd

    from tests.unit.benchmarks.test_custom_data import blobs

    np.savez(tmp_path / "mine.npz", **blobs(n_classes=4, per_class=30))
    launched = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "spp_sweep", "recommend", str(tmp_path / "mine.npz"), "--tasks", "2",
                           "--methods", "spp,finetune", "--budget", "2", "--seeds", "2", "--curve-points", "3",
                           "--set", "epochs=2", "--storage", str(tmp_path / "rec"), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    took = time.monotonic() - launched
    assert done.returncode == 0, done.stderr[-2000:]
    spent = pd.read_csv(tmp_path / "rec" / "mine" / "recommendation" / "compute.csv")
    assert spent.iloc[-1][["sweep", "phase"]].tolist() == ["recommendation", "reports"]
    assert (spent["wall_seconds"] > 0).all() and set(spent["wall_from"]) == {"driver"}
    assert "shut-down" not in set(spent["phase"])  # Ray's stop ran beside the reports, counted in their row
    assert len(json.loads((tmp_path / "rec" / "mine" / "search" / "phase_times.json").read_text())["start-up"]) == 1
    assert spent["wall_seconds"].sum() <= took  # every sweep's rows and the reports' inside the command's run
