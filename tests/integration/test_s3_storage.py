"""A sweep whose --storage is an S3 URI, served by a local S3-compatible server (moto's), as a
multi-node cluster would use it: the sweep, its report and --resume, all from the URI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):
    """A local S3 endpoint with bucket `sweeps`; the environment every process needs to reach it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket="sweeps")
    yield env
    server.stop()


def _sweep(study: Path, env: dict, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spp_sweep", "sweep", str(study), "--quiet",
                           "--storage", "s3://sweeps/runs", *flags], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_a_sweep_on_s3_reports_and_resumes_from_its_uri(tmp_path: Path, s3: dict) -> None:
    from spp_sweep.cli import main

    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "remote", "benchmark": "split_digits", "fixed": {"epochs": 1},
                                     "methods": {"spp": {"space": {"lam": [1.0, 4.0]}}, "finetune": {}},
                                     "resources": {"cpu": 1}, "seeds": 2}))
    first = _sweep(study, s3)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "spp-sweep report s3://sweeps/runs/remote" in first.stdout
    assert main(["report", "s3://sweeps/runs/remote", "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "6 trials: 6 finished" in text
    again = _sweep(study, s3, "--resume")  # finished: nothing runs again, the same six trials
    assert again.returncode == 0, again.stderr[-2000:]
    assert main(["report", "s3://sweeps/runs/remote", "--out", str(tmp_path / "again")]) == 0
    assert main(["status", "s3://sweeps/runs/remote"]) == 0
    assert "6 trials: 6 finished" in (tmp_path / "again" / "report.md").read_text()
    objects = boto3.client("s3").list_objects_v2(Bucket="sweeps", Prefix="runs/remote/")["Contents"]
    names = {o["Key"].rsplit("/", 1)[-1] for o in objects}
    assert {"study.yaml", "provenance.json", "params.json", "result.json"} <= names
    assert main(["report", "s3://sweeps/runs/nothing", "--out", str(tmp_path / "none")]) == 2

