"""bench/stacked_asha.py runs in seconds at a small size and finds what it must: the same results
with the ended members frozen in the stack and repacked out, and fewer member-tasks repacked."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_asha_stack_bench_runs_small_and_its_two_runs_agree() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "stacked_asha.py"), "--members", "6", "--tasks", "4",
                           "--epochs", "1", "--hidden", "32,16", "--rounds", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "results identical (status, every accuracy matrix): True" in done.stdout
    frozen, repacked = (int(n) for n in re.findall(r"(\d+) member-tasks computed", done.stdout))
    assert re.search(r"ended: [1-9]\d* stopped", done.stdout)  # the rungs stopped someone (seeded: 2 of 6)
    assert frozen == 6 * 4 and repacked < frozen  # frozen members are computed to the end; repacked ones not
