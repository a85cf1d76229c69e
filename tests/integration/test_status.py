"""`spp-sweep status`: how far a sweep is, from its folder alone (the finished case and a URI
are in tests/integration/test_s3_storage.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


def test_status_reads_a_sweep_that_has_not_started(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from spp_sweep.cli import main
    from spp_sweep.sweep.lock import sweep_lock
    from spp_sweep.sweep.study import load_study

    root = tmp_path / "lambda_robustness"
    root.mkdir()
    study = REPO / "studies" / "lambda_robustness.yaml"
    (root / "study.yaml").write_text(yaml.safe_dump(load_study(study).to_dict(), sort_keys=False))
    with sweep_lock(str(root)):  # a driver holds the sweep: running
        assert main(["status", str(root)]) == 0
    out = capsys.readouterr().out
    assert "0 of 414 configurations ended" in out and "left: unknown" in out
    assert "| grid    | spp      |       102 |          0 |" in out and "under way" in out
    assert main(["status", str(root)]) == 0  # none does (Ctrl+C, a killed driver): interrupted, nothing left timed
    out = capsys.readouterr().out
    assert "nothing is running it (interrupted)" in out and "--resume" in out and "under way" not in out
    assert main(["status", str(tmp_path / "none")]) == 2
