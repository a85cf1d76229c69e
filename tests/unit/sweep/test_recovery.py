"""What a full disk leaves in a trial folder, told apart from a trial that ended or failed on
its own (spp_sweep/sweep/recovery.py), on folders written by hand."""

from __future__ import annotations

import json
from pathlib import Path

from spp_sweep.sweep.recovery import _done, failed_for_want_of_space, stopped_for_want_of_space

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
