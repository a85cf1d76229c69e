"""`--address` against clusters started the way users start them: `ray start --head`, with
and without Ray's token authentication (on by default since Ray 2.59 where a token exists).

Each mismatch between the driver's authentication mode and the cluster's is a one-line
error naming the fix, before anything is written; the matched cases run end to end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.load import load_trials
from tests.unit.benchmarks.test_custom_data import blobs

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
pytestmark = pytest.mark.skipif(RAY is None, reason="the `ray` command is not installed")
TINY_STUDY = """name: tiny
benchmark: split_digits
fixed: {epochs: 1}
methods: {finetune: {space: {lr: [0.1]}}}
seeds: 1
resources: {cpu: 1}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(**settings: str) -> dict[str, str]:
    """This environment without Ray's authentication and address variables, plus ``settings``."""
    env = {key: value for key, value in os.environ.items()
           if key not in {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"}}
    return {**env, **settings}


@contextlib.contextmanager
def ray_start_head(auth_mode: str, token: str = "") -> Iterator[str]:
    """`ray start --head --block` in its own temp dir; yields HOST:PORT, stops it afterwards."""
    import ray

    ray.shutdown()  # leave the tests' shared local instance: two clusters on 2 cores is slow
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = _clean_env(RAY_AUTH_MODE=auth_mode, **({"RAY_AUTH_TOKEN": token} if token else {}))
    head = subprocess.Popen([RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()  # --block: ray start takes its processes down with it
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, 9)
        shutil.rmtree(temp_dir, ignore_errors=True)


def spp_sweep(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spp_sweep", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def assert_one_line_error(done: subprocess.CompletedProcess, message: str, storage: Path) -> None:
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr  # Ray's C++ log lines included
    assert not storage.exists()  # nothing half-written


def test_recommend_on_a_token_authenticated_cluster(tmp_path: Path) -> None:
    np.savez(tmp_path / "mine.npz", **blobs(n_classes=4, per_class=30))
    token = secrets.token_hex(32)
    storage = tmp_path / "rec"
    with ray_start_head("token", token) as address:
        recommend = ["recommend", str(tmp_path / "mine.npz"), "--methods", "spp,finetune", "--budget", "2",
                     "--seeds", "2", "--curve-points", "3", "--tasks", "2", "--set", "epochs=2", "--quiet",
                     "--address", address, "--storage", str(storage)]
        assert_one_line_error(spp_sweep(*recommend, env=_clean_env()), "requires token authentication; run with "
                              "RAY_AUTH_MODE=token", storage)
        wrong = _clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
        assert_one_line_error(spp_sweep(*recommend, env=wrong), "rejected this machine's authentication token",
                              storage)
        done = spp_sweep(*recommend, env=_clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token))
    assert done.returncode == 0, done.stderr[-3000:]
    report = storage / "mine" / "recommendation" / "recommendation.md"
    assert "**Use " in report.read_text()
    assert set(pd.read_csv(report.parent / "ranking.csv")["method"]) == {"spp", "finetune"}
    search = load_trials(storage / "mine" / "search")
    assert len(search) == 8 and set(search["status"]) == {"finished"}


def test_open_cluster_with_a_token_file_around(tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text(TINY_STUDY)
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))  # what any earlier ray.init() leaves
    storage = tmp_path / "sweeps"
    with ray_start_head("disabled") as address:
        sweep = ["sweep", str(tmp_path / "study.yaml"), "--storage", str(storage), "--quiet"]
        assert_one_line_error(spp_sweep(*sweep, "--address", address, env=_clean_env(HOME=str(home),
                                        RAY_AUTH_MODE="token")), "does not use token authentication", storage)
        # `--address auto` finds the cluster (here through RAY_ADDRESS); Ray alone would switch to
        # token mode because ~/.ray/auth_token exists, and every trial would die unstarted.
        done = spp_sweep(*sweep, "--address", "auto", env=_clean_env(HOME=str(home), RAY_ADDRESS=address))
    assert done.returncode == 0, done.stderr[-3000:]
    trials = load_trials(storage / "tiny")
    assert len(trials) == 1 and set(trials["status"]) == {"finished"}
