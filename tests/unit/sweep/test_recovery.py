"""What a full disk leaves in a trial folder, told apart from a trial that ended or failed on
its own (spp_sweep/sweep/recovery.py), on folders written by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from spp_sweep.sweep.recovery import (
    _done,
    clear_damaged_checkpoints,
    failed_for_want_of_space,
    saved_state,
    stopped_for_want_of_space,
)

SPEC = json.dumps({"trial": {"method": "spp", "seed": 0, "params": {"lam": 1.0}}})
FINISHED = json.dumps({"task": 5, "status": "finished", "score": 0.9, "accuracy_matrix": [[0.9]]})


def trial(root: Path, name: str, params: str = SPEC, error: str | None = None, report: str | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(params)
    if error is not None:
        (folder / "error.txt").write_text(error)
    if report is not None:
        (folder / "result.json").write_text(report + "\n")
    return folder


def test_a_full_disk_is_told_apart_from_a_trial_that_ended_or_failed_on_its_own(tmp_path: Path) -> None:
    ended = trial(tmp_path, "ended", report=FINISHED)
    own_error = trial(tmp_path, "own", error="Failure # 1\nRuntimeError: injected failure at task 2\n")
    no_space = trial(tmp_path, "nospace", error="Failure # 1\nOSError: [Errno 28] No space left on device\n")
    empty_error = trial(tmp_path, "empty_error", error="")
    cut_params = trial(tmp_path, "cut", params=SPEC[:10], report=FINISHED)
    running = trial(tmp_path, "running")
    assert [failed_for_want_of_space(f) for f in (ended, own_error, no_space, empty_error, cut_params, running)] == \
        [False, False, True, True, True, False]
    assert [_done(f) for f in (ended, own_error, no_space, empty_error, cut_params, running)] == \
        [True, True, False, False, False, False]


def test_a_phase_is_continued_from_its_folders_when_the_disk_stopped_it(tmp_path: Path) -> None:
    trial(tmp_path / "clean", "ended", report=FINISHED)
    trial(tmp_path / "clean", "own", error="RuntimeError: a bug\n")
    assert not stopped_for_want_of_space(str(tmp_path / "clean"))
    trial(tmp_path / "full", "ended", report=FINISHED)
    trial(tmp_path / "full", "nospace", error="OSError: [Errno 28] No space left on device\n")
    assert stopped_for_want_of_space(str(tmp_path / "full"))
    trial(tmp_path / "cut", "finished_but_cut", params="", report=FINISHED)
    assert stopped_for_want_of_space(str(tmp_path / "cut"))


def test_checkpoints_a_full_disk_cut_are_emptied_before_a_restore_and_whole_ones_kept(tmp_path: Path) -> None:
    """What the full-disk sweep left in CI: a trial with no error file (Ray could not write one)
    and a checkpoint whose state.pt has no bytes, restored in place."""
    folder = trial(tmp_path, "spp_seed1_00001")
    whole, empty, cut, bad_json = (folder / f"checkpoint_00000{i}" for i in range(4))
    for checkpoint in (whole, empty, cut, bad_json):
        checkpoint.mkdir()
    torch.save({"step": torch.zeros(3)}, whole / "state.pt")
    (whole / "result.json").write_text(FINISHED)
    (empty / "state.pt").write_bytes(b"")
    torch.save({"step": torch.zeros(300)}, cut / "state.pt")
    (cut / "state.pt").write_bytes((cut / "state.pt").read_bytes()[:200])  # the copy stopped mid-file
    torch.save({"step": torch.zeros(3)}, bad_json / "state.pt")
    (bad_json / "result.json").write_text(FINISHED[:20])
    assert clear_damaged_checkpoints(str(tmp_path)) == 3
    assert sorted(f.name for f in whole.iterdir()) == ["result.json", "state.pt"]
    assert all(c.is_dir() and not any(c.iterdir()) for c in (empty, cut, bad_json))  # placeholders Ray may name
    assert clear_damaged_checkpoints(str(tmp_path)) == 0


def test_a_finished_trial_whose_report_file_the_disk_emptied_gets_its_final_report_back(tmp_path: Path) -> None:
    from analysis.load import read_reports
    from spp_sweep.sweep.recovery import mend_report_files

    folder = trial(tmp_path, "finished", report="")
    (folder / "result.json").write_text("")  # the driver's log lost every line; the checkpoint is whole
    checkpoint = folder / "checkpoint_000004"
    checkpoint.mkdir()
    result = {"status": "finished", "accuracy_matrix": [[0.9]], "task_names": ["t1"], "metrics": {"acc": 0.9},
              "initial_accuracy": [0.5], "seconds": 1.0}
    (checkpoint / "result.json").write_text(json.dumps(result))
    running = trial(tmp_path, "running", report=json.dumps({"task": 1, "status": "running"}))
    assert mend_report_files(str(tmp_path)) == 1
    assert [r["status"] for r in read_reports(folder)] == ["finished"] and read_reports(folder)[0]["acc"] == 0.9
    assert [r["status"] for r in read_reports(running)] == ["running"]  # nothing to recover: left alone
    assert mend_report_files(str(tmp_path)) == 0


def test_the_state_file_judged_is_the_one_ray_restores_by_its_name_whatever_the_clock_did(tmp_path: Path) -> None:
    """Ray Tune restores the greatest name of each kind (names carry their session's start); a
    clock set back makes the newer session's file the older by modification time. The file judged
    is Ray's, so a cut one there reads corrupt and a cut older one is not held against a whole newer one."""
    for whole_newer in (False, True):
        folder = tmp_path / f"whole_newer_{whole_newer}"
        folder.mkdir()
        older, newer = (folder / f"experiment_state-2026-12-0{day}_10-00-00.json" for day in (1, 7))
        older.write_text("{}" if not whole_newer else "{")
        newer.write_text("{}" if whole_newer else "{")
        os.utime(newer, (1_000_000, 1_000_000))  # written after the clock was set back by decades
        assert saved_state(str(folder)) == ("valid" if whole_newer else "corrupt")
