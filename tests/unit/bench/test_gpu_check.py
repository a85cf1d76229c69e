"""bench/gpu_check.py, the prepared GPU check, runs on the CPU in seconds and writes its JSON
(the same code a lent GPU machine runs with --device cuda)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow  # a sweep or a script end to end: 10 s or more
def test_the_gpu_check_runs_on_cpu_and_writes_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(out.read_text())
    assert found["equivalence"]["equal"] and found["equivalence"]["max_abs_gap"] == 0.0  # CPU against CPU
    for stacked in ("stacked_mlp", "stacked_vgg9"):
        rows = found[stacked]["rows"]
        assert {"stacked K=1", "stacked K=3", "separate x1", "separate x2"} <= set(rows), found[stacked]
        assert all(row["members_per_s"] > 0 for row in rows.values()) and rows["separate x2"]["failed_processes"] == 0
    assert found["vgg9"]["engine_images_per_s"] > 0 and found["vgg9"]["ratio_engine_over_bare"] > 0
    for method in ("er", "agem", "derpp"):  # CPU against CPU: the same draws, the same matrices
        assert found["replay"][method]["max_abs_gap"] == 0.0 and found["replay"][method]["device_s"] > 0
    assert found["replay"]["stacked_er"]["equal"] and found["replay"]["stacked_er"]["members"] == 7
