"""Files someone hands you run nothing (issue 27): study files, sweep folders, checkpoints and
data. Every payload here would create a marker file if it ran; each test asserts it did not, and
that the refusal is one line naming the fix."""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from spp_sweep.benchmarks import build_benchmark
from spp_sweep.cli import main
from spp_sweep.errors import ConfigError, DataError
from spp_sweep.sweep import provenance
from spp_sweep.sweep.study import StudyError, load_study, name_problem
from tests.conftest import REPO


class Payload:
    """Unpickles to a call of ``Path.touch`` on ``marker``: what a planted pickle would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own sweep key (provenance.py), as a fresh account would have."""
    path = tmp_path / "key" / "sweep-key"
    monkeypatch.setenv(provenance.KEY_ENV, str(path))
    return path


def test_a_study_naming_an_entry_point_runs_nothing_without_allow_code(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    marker = tmp_path / "ran"
    study = {"name": "planted", "benchmark": "python", "storage": str(tmp_path / "sweeps"),
             "benchmark_options": {"entry": "pathlib:Path.touch", "options": {"self": str(marker)}},
             "methods": {"finetune": {}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert main(["sweep", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "runs code" in err and "--allow-code" in err and "\n" not in err
    assert not marker.exists() and not (tmp_path / "sweeps").exists()


def test_yaml_tags_that_build_objects_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "study.yaml"
    path.write_text(f"name: x\nbenchmark: split_digits\nmethods: !!python/object/apply:pathlib.Path.touch "
                    f"['{marker}']\n")
    with pytest.raises(StudyError, match="not readable YAML"):
        load_study(path)
    assert not marker.exists()


def test_resume_refuses_a_sweep_folder_this_account_did_not_start(tmp_path: Path, key_file: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from spp_sweep.sweep.runner import STUDY_COPY, SweepOptions, prepare_study

    study = load_study(REPO / "studies" / "lambda_robustness.yaml")
    root = tmp_path / "sweeps" / "lambda_robustness"
    root.mkdir(parents=True)
    text = yaml.safe_dump(study.to_dict(), sort_keys=False)
    (root / STUDY_COPY).write_text(text)
    options = SweepOptions(storage=str(tmp_path / "sweeps"), resume=True)
    with pytest.raises(ConfigError, match="not started by spp-sweep under this account.*--trust-state"):
        prepare_study(study, options)  # a folder from elsewhere: no provenance.json
    provenance.mark(str(root), text, lambda p, t: Path(p).write_text(t))
    assert key_file.stat().st_mode & 0o777 == 0o600
    prepare_study(study, options)  # marked by this account: resumes
    (root / STUDY_COPY).write_text(text.replace("epochs: 10", "epochs: 11"))
    with pytest.raises(ConfigError, match="study.yaml was changed"):
        prepare_study(study, options)
    key_file.write_text("00" * 32)  # another account's key
    (root / STUDY_COPY).write_text(text)
    with pytest.raises(ConfigError, match="not started"):
        prepare_study(study, options)
    prepare_study(study, SweepOptions(storage=str(tmp_path / "sweeps"), resume=True, trust_state=True))


def test_the_mark_is_bound_to_the_folders_place(tmp_path: Path, key_file: Path) -> None:
    from spp_sweep.sweep.runner import STUDY_COPY, SweepOptions, prepare_study

    study = load_study(REPO / "studies" / "lambda_robustness.yaml")
    root = tmp_path / "sweeps" / "lambda_robustness"
    root.mkdir(parents=True)
    text = yaml.safe_dump(study.to_dict(), sort_keys=False)
    (root / STUDY_COPY).write_text(text)
    provenance.mark(str(root), text, lambda p, t: Path(p).write_text(t))
    prepare_study(study, SweepOptions(storage=str(tmp_path / "sweeps"), resume=True))
    moved = tmp_path / "elsewhere"
    root.parent.rename(moved)  # moved and renamed: its mark names the old place
    with pytest.raises(ConfigError, match="folder was moved"):
        prepare_study(study, SweepOptions(storage=str(moved), resume=True))


def test_ray_state_counts_as_signed_only_as_it_was_signed(tmp_path: Path, key_file: Path) -> None:
    path = str(tmp_path / "grid")
    (tmp_path / "grid").mkdir()
    write = lambda p, t: Path(p).write_text(t)  # noqa: E731
    read = lambda p: Path(p).read_text() if Path(p).exists() else None  # noqa: E731
    files = {"tuner.pkl": b"state", "experiment_state-2026.json": b"{}"}
    assert not provenance.state_signed(path, files, read)  # never signed
    provenance.sign_state(path, files, write)
    assert provenance.state_signed(path, files, read)
    assert provenance.state_signed(path, {"tuner.pkl": b"state"}, read)  # an older state Ray has since deleted
    assert not provenance.state_signed(path, {**files, "tuner.pkl": b"planted"}, read)  # replaced
    assert not provenance.state_signed(path, {**files, "searcher-state-1.pkl": b"x"}, read)  # added
    assert not provenance.state_signed(str(tmp_path / "other"), files,
                                       lambda p: read(p.replace("other", "grid")))  # the signature moved elsewhere
    key_file.write_text("00" * 32)  # another account's key
    assert not provenance.state_signed(path, files, read)


def test_a_planted_ray_state_is_set_aside_unread_on_resume(tmp_path: Path, key_file: Path, ray_local,
                                                          capsys: pytest.CaptureFixture) -> None:
    from analysis.load import load_trials, read_reports
    from spp_sweep.sweep.runner import SweepOptions, run_sweep
    from spp_sweep.sweep.study import parse_study

    study = parse_study({"name": "planted", "benchmark": "split_digits", "storage": str(tmp_path), "stack": "off",
                         "fixed": {"epochs": 1}, "methods": {"spp": {"space": {"lam": [1.0, 4.0]}}},
                         "resources": {"cpu": 1}})
    root = Path(run_sweep(study, SweepOptions(verbose=0)).root)
    assert (root / "grid" / provenance.STATE_MARK).is_file()
    run_sweep(study, SweepOptions(verbose=0, resume=True))  # signed by this account: restored by Ray
    assert "not as this account signed" not in capsys.readouterr().err
    marker = tmp_path / "ran"
    (root / "grid" / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))  # shared storage, one file replaced
    run_sweep(study, SweepOptions(verbose=0, resume=True))
    assert not marker.exists() and "not as this account signed" in capsys.readouterr().err
    trials = load_trials(root)
    assert len(trials) == 2 and set(trials["status"]) == {"finished"}  # nothing lost, nothing rerun
    assert not any(r.get("replayed") for path in trials["path"] for r in read_reports(Path(path)))


def test_the_state_check_reads_ray_state_files_only_and_never_unpickles(tmp_path: Path) -> None:
    from spp_sweep.sweep.recovery import _readable, saved_state

    marker = tmp_path / "ran"
    phase = tmp_path / "grid"
    phase.mkdir()
    (phase / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": []}))
    (phase / "notes").write_bytes(pickle.dumps(Payload(marker)))  # not a Ray file: never read
    (phase / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))  # walked by pickletools, not loaded
    assert saved_state(str(phase)) == "valid"
    assert not marker.exists()
    (phase / "tuner.pkl").write_bytes(pickle.dumps({"a": list(range(100))})[:-5])  # cut short
    assert not _readable(phase / "tuner.pkl")
    assert saved_state(str(phase)) == "corrupt"


def test_a_planted_checkpoint_is_skipped_without_running(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from spp_sweep.config import RunConfig
    from spp_sweep.engine import Experiment
    from spp_sweep.sweep.trainable import STATE_FILE, resume_from

    marker = tmp_path / "ran"
    folder = tmp_path / "checkpoint_000000"
    folder.mkdir()
    torch.save({"model": Payload(marker)}, folder / STATE_FILE)
    experiment = Experiment(RunConfig(method="finetune", benchmark="split_digits", epochs=1))
    assert resume_from([folder], experiment) is None
    assert not marker.exists()
    assert "unusable" in capsys.readouterr().err
    assert experiment.next_task == 0  # nothing loaded: the trial starts from its first task


def test_data_files_with_pickled_objects_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    arrays = {"x_train": np.zeros((4, 3)), "y_train": np.array([0, 1, 0, 1]), "x_test": np.zeros((2, 3)),
              "y_test": np.array([0, 1])}
    npz = tmp_path / "data.npz"
    np.savez(npz, **{**arrays, "y_train": np.array([Payload(marker)] * 4, dtype=object)})
    with pytest.raises(DataError):
        build_benchmark("arrays", {"path": str(npz)})
    pt = tmp_path / "data.pt"
    torch.save({**{k: torch.as_tensor(v) for k, v in arrays.items()}, "x_train": Payload(marker)}, pt)
    with pytest.raises(DataError):
        build_benchmark("arrays", {"path": str(pt)})
    assert not marker.exists()


@pytest.mark.parametrize("name", ["", ".", "..", "../../x", "a/b", "a\\b", "a b", "a\nb", "a\x00b", "x" * 300,
                                  "report\u202egpj.exe"])  # a right-to-left override shows another name
def test_a_sweep_name_is_one_plain_folder_name(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert name_problem(name) is not None
    code = main(["sweep", str(REPO / "studies" / "lambda_robustness.yaml"), "--quiet",
                 "--storage", str(tmp_path / "sweeps"), "--name", name])
    assert code == 2
    assert "--name" in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists() and not any(tmp_path.parent.glob("x"))


def test_plain_names_pass() -> None:
    assert name_problem("split_mnist_authors-per_task.v2") is None


def test_a_report_names_damaged_trials_and_goes_on(tmp_path: Path, ray_local) -> None:
    from analysis.load import load_importances, load_trials
    from analysis.report import write_report
    from spp_sweep.sweep.runner import SweepOptions, run_sweep
    from spp_sweep.sweep.study import parse_study

    study = parse_study({"name": "damaged", "benchmark": "split_digits", "storage": str(tmp_path), "stack": "off",
                         "fixed": {"epochs": 1, "save_importances": True},
                         "methods": {"spp": {"space": {"lam": [1.0, 4.0, 12.0]}}}, "resources": {"cpu": 1}})
    root = Path(run_sweep(study, SweepOptions(verbose=0)).root)
    folders = sorted(p.parent for p in root.rglob("params.json") if "checkpoint_" not in p.parent.name)
    assert len(folders) == 3
    (folders[0] / "params.json").write_text('{"study": {"bench')  # cut short
    (folders[1] / "result.json").write_bytes(b"\xff\xfe not utf-8\n")  # recovered from its final checkpoint
    marker = tmp_path / "ran"
    checkpoint = sorted(folders[2].glob("checkpoint_*"))[-1]
    np.savez(checkpoint / "importances.npz", w=np.array([Payload(marker)], dtype=object))
    trials = load_trials(root)
    assert len(trials) == 2 and trials.attrs["damaged"][0].startswith(str(folders[0]))
    assert load_importances(folders[2]) is None and not marker.exists()
    text = write_report(root, tmp_path / "report").read_text()
    assert "damaged, left out of every table" in text and "2 of 3 trials: 2 finished" in text


def _image_tree(root: Path, size: int = 10) -> None:
    from PIL import Image

    for index, name in enumerate(["a", "b", "c", "d"]):
        (root / name).mkdir(parents=True)
        for k in range(4):
            Image.fromarray(np.full((size, size, 3), 40 * index + k, dtype=np.uint8)).save(root / name / f"{k}.png")


def test_an_image_tree_that_loops_through_a_link_is_refused_at_once(tmp_path: Path) -> None:
    _image_tree(tmp_path / "pics")
    (tmp_path / "pics" / "a" / "loop").symlink_to(tmp_path / "pics", target_is_directory=True)
    with pytest.raises(DataError, match="symbolic link"):
        build_benchmark("image_folder", {"path": str(tmp_path / "pics"), "n_tasks": 2})


def test_a_decompression_bomb_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    _image_tree(tmp_path / "pics", size=20)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # a 20x20 image is then a bomb (over twice the limit)
    with pytest.raises(DataError, match="DecompressionBombError"):
        build_benchmark("image_folder", {"path": str(tmp_path / "pics"), "n_tasks": 2})


def test_unwritable_places_and_unreachable_trackers_are_one_line(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:

    study = str(REPO / "studies" / "lambda_robustness.yaml")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["sweep", study, "--quiet", "--storage", str(blocker)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--out", str(blocker)]) == 2
    assert "is a file" in capsys.readouterr().err
    import socket

    from spp_sweep.sweep import trackers

    probes: list[float | None] = []
    connect = socket.create_connection

    def probe(address, timeout=None, *args, **kwargs):  # noqa: ANN001, ANN202 - socket's own signature
        probes.append(timeout)
        return connect(address, timeout, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "create_connection", probe)
        code = main(["sweep", study, "--quiet", "--storage", str(tmp_path / "s"), "--mlflow", "http://127.0.0.1:9"])
    assert code == 2 and "no tracking server answers" in capsys.readouterr().err
    assert probes == [trackers.REACH_TIMEOUT_S]  # one probe, bounded: the check cannot hang
    assert main(["sweep", study, "--quiet", "--storage", str(tmp_path / "s"), "--mlflow", "file:///tmp/x"]) == 2
    assert "sqlite:///" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_restarted_trial_without_a_named_checkpoint_continues_from_its_own_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray Tune may restart a trial without naming a checkpoint (a worker killed before the
    snapshot named one): the trial's own newest checkpoint is used, no finished task trained again."""
    from ray import tune

    from spp_sweep.config import RunConfig
    from spp_sweep.engine import Experiment
    from spp_sweep.sweep import trainable

    config = RunConfig(method="ewc", benchmark="split_digits", epochs=1, threads=1)
    trial = tmp_path / "ewc_trial"
    for task in (0, 1):
        (trial / f"checkpoint_00000{task}").mkdir(parents=True)

    def keep(report, experiment):
        if report.task <= 1:
            torch.save(experiment.state_dict(), trial / f"checkpoint_00000{report.task}" / trainable.STATE_FILE)

    whole = Experiment(config).run(on_task_end=keep)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tune, "get_context", lambda: type("Context", (), {"get_trial_dir": lambda self: str(trial)})())
    resumed = Experiment(config)
    assert trainable.restore({"trial": {}}, resumed) is None
    assert resumed.next_task == 2  # from checkpoint_000001, the newest
    assert resumed.run().accuracy_matrix == whole.accuracy_matrix


def test_a_cut_report_file_is_recovered_from_the_final_checkpoint(tmp_path: Path, ray_local) -> None:
    from analysis.load import load_matrices, load_trials
    from spp_sweep.sweep.recovery import done_trials
    from spp_sweep.sweep.runner import SweepOptions, run_sweep
    from spp_sweep.sweep.study import parse_study

    study = parse_study({"name": "cut", "benchmark": "split_digits", "storage": str(tmp_path),
                         "fixed": {"epochs": 1}, "methods": {"ewc": {"space": {"lam": [1.0, 10.0, 100.0]}},
                                                             "finetune": {}}, "resources": {"cpu": 1}})
    root = Path(run_sweep(study, SweepOptions(verbose=0)).root)
    before = load_trials(root).sort_values("trial_id").reset_index(drop=True)
    matrices = load_matrices(root)
    stack = next(p.parent for p in root.rglob("params.json") if p.parent.name.startswith("ewc"))
    text = (stack / "result.json").read_text()
    (stack / "result.json").write_text(text[: len(text) // 2])  # a killed writer
    after = load_trials(root).sort_values("trial_id").reset_index(drop=True)
    assert list(after["status"]) == list(before["status"]) == ["finished"] * 4
    pd_columns = ["acc", "bwt", "val_acc"] if "val_acc" in before else ["acc", "bwt"]
    assert after[pd_columns].equals(before[pd_columns])
    recovered = load_matrices(root).sort_values(["trial_id", "after_task", "task"]).reset_index(drop=True)
    assert recovered.equals(matrices.sort_values(["trial_id", "after_task", "task"]).reset_index(drop=True))
    done = done_trials(str(root / "grid"))  # the stack's three configurations and fine-tuning ended,
    assert len(done) == 4  # each with its score (the metric: acc), the stack's rebuilt from its checkpoint
    by_lam = {ended.params.get("lam"): ended.score for ended in done}
    for row in before.itertuples():
        assert by_lam[None if row.method == "finetune" else row.lam] == row.acc


def test_what_cannot_fit_in_memory_is_refused_before_allocating(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--hidden", "200000,200000", "--epochs", "1", "--quiet", "--out", "/nonexistent/x"]) == 2
    assert "GiB" in capsys.readouterr().err
    assert main(["run", "--benchmark", "permuted_digits", "--n-tasks", "10000000", "--quiet"]) == 2
    assert "fewer tasks" in capsys.readouterr().err


def test_a_method_listed_twice_is_refused() -> None:
    from spp_sweep.sweep.study import parse_study

    with pytest.raises(StudyError, match="spp listed twice"):
        parse_study({"benchmark": "split_digits", "methods": ["spp", "finetune", "spp"]})


def test_a_full_disk_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import errno

    import spp_sweep.cli.run

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/result.json")

    monkeypatch.setattr(spp_sweep.cli.run, "run_command", full)
    assert main(["run", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk is full writing /data/out/result.json" in err and "--resume" in err


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory, ray_local) -> Path:
    """One small finished sweep (6 trials, importances saved), copied by each test that damages it."""
    from spp_sweep.sweep.runner import SweepOptions, run_sweep
    from spp_sweep.sweep.study import parse_study

    storage = tmp_path_factory.mktemp("finished")
    study = parse_study({"name": "clean", "benchmark": "split_digits", "storage": str(storage), "stack": "off",
                         "fixed": {"epochs": 1, "save_importances": True, "first_tasks": 2},
                         "methods": {"spp": {"space": {"lam": [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]}}},
                         "resources": {"cpu": 1}})
    return Path(run_sweep(study, SweepOptions(verbose=0)).root)


def _tamper_last_report(folder: Path, change) -> None:
    lines = (folder / "result.json").read_text().splitlines()
    last = json.loads(lines[-1])
    change(last)
    (folder / "result.json").write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    for checkpoint in folder.glob("checkpoint_*"):  # no finished result to recover the report from
        (checkpoint / "result.json").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def tampered_sweep(finished_sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished sweep with five trials damaged in five ways and a plan that is not one."""
    import shutil

    root = tmp_path_factory.mktemp("tampered") / "clean"
    shutil.copytree(finished_sweep, root)
    folders = sorted(p.parent for p in (root / "grid").glob("*/params.json"))
    assert len(folders) == 6
    _tamper_last_report(folders[0], lambda r: r.update(acc="high"))  # a string where a number is
    _tamper_last_report(folders[1], lambda r: r.update(acc=float("inf")))  # inf is never a result
    _tamper_last_report(folders[2], lambda r: r["accuracy_matrix"][0].pop())  # a ragged matrix
    params = json.loads((folders[3] / "params.json").read_text())  # a stack of two, a report of one
    params["trial"] = {**params["trial"], "members": [params["trial"], params["trial"]]}
    (folders[3] / "params.json").write_text(json.dumps(params))
    _tamper_last_report(folders[3], lambda r: r.update(members=[dict(r)]))
    (folders[4] / "result.json").unlink()
    (folders[4] / "result.json").symlink_to("/dev/zero")  # a report that never ends
    for checkpoint in folders[4].glob("checkpoint_*"):
        with open(checkpoint / "result.json", "wb") as file:
            file.truncate(1_500_000_000)  # 1.5 GB (sparse): refused by its size, never read
    checkpoint = sorted(folders[5].glob("checkpoint_*"))[-1]
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (10**11,)  # a header claiming 10^11 floats
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with zipfile.ZipFile(checkpoint / "importances.npz", "w") as archive:
        archive.writestr("task0/w.npy", buffer.getvalue() + np.zeros(1).tobytes())
    (root / "plan.json").write_text('["not", "a", "plan"]')
    return root


def test_a_tampered_sweep_loads_its_one_sound_trial_and_names_five_damaged(tampered_sweep: Path) -> None:
    from analysis.load import load_importances, load_trials

    trials = load_trials(tampered_sweep)
    assert len(trials) == 1 and len(trials.attrs["damaged"]) == 5
    huge_header = sorted(p.parent for p in (tampered_sweep / "grid").glob("*/params.json"))[5]
    assert load_importances(huge_header) is None


def test_the_report_of_a_tampered_sweep_says_why_each_trial_is_left_out(tampered_sweep: Path, tmp_path: Path) -> None:
    assert main(["report", str(tampered_sweep), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert text.count("damaged, left out of every table") == 5
    shown = [line for line in text.splitlines() if not line.startswith("- damaged")]
    assert not any(re.search(r"\binf\b", line) for line in shown)  # no infinity shown as a result
    assert "inf" not in (tmp_path / "report" / "trials.csv").read_text()
    for why in ("acc is str", "acc is inf", "accuracy_matrix is not one row", "holds 1 members and its params.json 2",
                "is not a regular file"):
        assert why in text, why


def test_status_and_compare_read_a_tampered_sweep_without_a_traceback(tampered_sweep: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    assert main(["status", str(tampered_sweep)]) == 0
    assert main(["compare", f"a={tampered_sweep}", f"b={tampered_sweep}", "--method", "spp"]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("study_text", [
    "name: x\nbenchmark: split_digits\nmethods: [spp]\ndescription: " + "[" * 600 + "]" * 600 + "\n",
    "\n".join([*["a: &a [x, x, x, x, x, x, x, x, x]"],
               *[f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefg", "bcdefgh")],
               "name: x", "benchmark: split_digits", "methods: [spp]"]) + "\n",
    "base: &base {spp: {options: {lam: 1}}}\nname: x\nbenchmark: split_digits\n"
    "methods: {<<: *base, spp: {options: {lam: 4}}}\n",
])
def test_a_hostile_saved_study_is_one_line_in_status(study_text: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "x"
    root.mkdir()
    (root / "study.yaml").write_text(study_text)
    assert main(["status", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and "study file" in err


def test_a_fifo_among_the_pictures_is_refused_not_waited_on(tmp_path: Path) -> None:
    import os

    _image_tree(tmp_path / "pics")
    os.mkfifo(tmp_path / "pics" / "a" / "zz.png")
    with pytest.raises(DataError, match="zz.png is not a regular file inside"):
        build_benchmark("image_folder", {"path": str(tmp_path / "pics"), "n_tasks": 2})
    (tmp_path / "pics" / "a" / "zz.png").unlink()
    outside = tmp_path / "secret.png"
    (tmp_path / "pics" / "a" / "0.png").rename(outside)
    (tmp_path / "pics" / "a" / "zz.png").symlink_to(outside)  # a link leading out of the folder
    with pytest.raises(DataError, match="a link leading out"):
        build_benchmark("image_folder", {"path": str(tmp_path / "pics"), "n_tasks": 2})


def _plain_study(tmp_path: Path, storage: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "plain", "benchmark": "split_digits", "storage": str(storage),
                                    "methods": {"finetune": {}}}))
    return path


def test_storage_through_a_loop_of_links_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert main(["sweep", str(_plain_study(tmp_path, tmp_path / "a" / "sweeps")), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "loop of links" in err and "\n" not in err


def test_an_unusable_sweep_key_is_refused_before_the_sweep_starts(tmp_path: Path, key_file: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    key_file.parent.mkdir(parents=True)
    key_file.write_text("not hex")  # a sweep signed with no key could never be resumed
    assert main(["sweep", str(_plain_study(tmp_path, tmp_path / "sweeps")), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "sweep key" in err and provenance.KEY_ENV in err and "\n" not in err
    assert not (tmp_path / "sweeps").exists()  # a refused study leaves nothing behind


def test_no_writable_temporary_folder_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    import tempfile

    def none_usable() -> str:  # what tempfile raises where no candidate folder is writable
        raise FileNotFoundError("No usable temporary directory found")

    monkeypatch.setattr(tempfile, "gettempdir", none_usable)
    assert main(["sweep", str(_plain_study(tmp_path, tmp_path / "sweeps")), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "TMPDIR" in err and "\n" not in err and not (tmp_path / "sweeps").exists()


@pytest.mark.parametrize("change, match", [
    (lambda d: d.update(y_train=d["y_train"].astype(np.uint64), y_test=d["y_test"].astype(np.uint64)),
     "stored as uint64; store labels as int64"),
    (lambda d: d.update(x_test=d["x_test"][:0], y_test=d["y_test"][:0]), "x_test holds no sample"),
])
def test_label_types_and_empty_splits_are_one_line(change, match: str, tmp_path: Path) -> None:
    generator = np.random.default_rng(0)
    data = {"x_train": generator.normal(size=(40, 5)).astype(np.float32), "y_train": np.arange(40) % 4,
            "x_test": generator.normal(size=(20, 5)).astype(np.float32), "y_test": np.arange(20) % 4}
    change(data)
    np.savez(tmp_path / "data.npz", **data)
    with pytest.raises(DataError, match=match):
        build_benchmark("arrays", {"path": str(tmp_path / "data.npz"), "n_tasks": 2})


def test_unreachable_object_storage_is_one_line_before_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    """s3:// storage with no server behind it: the lease (lock.json) is the first thing written,
    and its failure is one line with exit 2, before Ray starts."""
    import ray

    for name, value in {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
                        "AWS_SECRET_ACCESS_KEY": "y", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    started = ray.is_initialized()
    assert main(["sweep", str(_plain_study(tmp_path, tmp_path)), "--storage", "s3://bucket/sweeps", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be written" in err and "\n" not in err and ray.is_initialized() == started
