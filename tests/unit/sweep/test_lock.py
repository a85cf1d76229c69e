"""A sweep folder has one writer (issue 42): a second driver is refused in one line naming the
holder, before Ray starts; a lock its process left behind is taken over; a refused study leaves
no folder behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spp_sweep.cli import main
from spp_sweep.errors import ConfigError
from spp_sweep.sweep.lock import LEASE_FILE, LOCK_FILE, running, sweep_lock


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    root = tmp_path / "sweeps" / "a"
    with sweep_lock(str(root)):
        assert running(root)
        with pytest.raises(ConfigError, match=f"being written by process {os.getpid()} on"):
            with sweep_lock(str(root)):
                pass
    assert not running(root)
    with sweep_lock(str(root)):  # released in order: the next driver takes it without a warning
        pass


def test_a_lock_left_by_a_killed_driver_is_taken_over_with_a_warning(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "a"
    code = ("import sys, os; from spp_sweep.sweep.lock import sweep_lock\n"
            f"with sweep_lock({str(root)!r}):\n    os._exit(9)\n")  # dies holding it: the kernel drops the lock
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9
    assert json.loads((root / LOCK_FILE).read_text())["pid"] > 0
    with sweep_lock(str(root)):
        assert "taking over the lock" in capsys.readouterr().err


def test_a_refused_study_leaves_no_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        with sweep_lock(str(tmp_path / "new" / "sweep")):
            raise ConfigError("refused")
    assert list(tmp_path.iterdir()) == []


def test_a_second_sweep_on_a_held_folder_is_refused_before_anything_runs(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "busy", "benchmark": "split_digits", "storage": str(tmp_path / "s"),
                                     "methods": {"finetune": {}}}))
    with sweep_lock(str(tmp_path / "s" / "busy")):
        assert main(["sweep", str(study), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "being written by process" in err and "\n" not in err
        assert main(["sweep", str(study), "--resume", "--quiet"]) == 2
        assert sorted(p.name for p in (tmp_path / "s" / "busy").iterdir()) == [LOCK_FILE]  # nothing else written


def test_a_lease_on_object_storage_names_its_holder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = f"file://{tmp_path}/bucket/sweep"
    with sweep_lock(root):
        lease = json.loads((tmp_path / "bucket" / "sweep" / LEASE_FILE).read_text())
        assert lease["pid"] == os.getpid() and running(tmp_path / "bucket" / "sweep")
        with pytest.raises(ConfigError, match="being written by process .* delete that lease"):
            with sweep_lock(root):
                pass
    assert not (tmp_path / "bucket" / "sweep" / LEASE_FILE).exists()
    assert not running(tmp_path / "bucket" / "sweep")  # status reads a copy of the folder: no lease, not running
    lease_file = tmp_path / "bucket" / "sweep" / LEASE_FILE
    lease_file.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "x"}))  # another machine's driver
    with pytest.raises(ConfigError, match="on elsewhere"):
        with sweep_lock(root):
            pass
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lease_file.write_text(json.dumps({"host": socket.gethostname(), "pid": int(gone.stdout), "since": "x"}))
    with sweep_lock(root):  # a process of this host that has ended: taken over
        assert "taking over the lease" in capsys.readouterr().err
