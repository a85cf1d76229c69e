"""The command's exit: the exit code, the output and the exit handlers survive skipping the
interpreter's teardown (cli._exit), and a thread still running is waited for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
atexit.register(lambda: Path({marker!r}).write_text("handler ran"))
if {thread}:
    threading.Thread(target=lambda: (time.sleep(3), Path({marker!r} + ".thread").write_text("done"))).start()
sys.argv = ["spp-sweep", *{arguments!r}]
from spp_sweep.cli import entry_point
entry_point()
"""


def run(tmp_path: Path, arguments: list[str], thread: bool = False) -> subprocess.CompletedProcess:
    code = SCRIPT.format(marker=str(tmp_path / "marker"), thread=thread, arguments=arguments)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_exit_keeps_the_code_the_output_and_the_exit_handlers(tmp_path: Path) -> None:
    done = run(tmp_path, ["methods"])
    assert done.returncode == 0 and "spp" in done.stdout
    assert (tmp_path / "marker").read_text() == "handler ran"
    failed = run(tmp_path, ["sweep", str(tmp_path / "missing.yaml")])
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and "missing.yaml" in failed.stderr


def test_a_thread_still_running_is_waited_for(tmp_path: Path) -> None:
    done = run(tmp_path, ["methods"], thread=True)
    assert done.returncode == 0 and (tmp_path / "marker.thread").read_text() == "done"
    assert (tmp_path / "marker").read_text() == "handler ran"
