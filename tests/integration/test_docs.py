"""The documented examples marked ``<!-- check: run -->`` run as written (tests/docs_blocks.py)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.docs_blocks import all_blocks, shell_commands

RUN = [b for b in all_blocks() if b.value == "run"]
PAGES = sorted({b.path for b in RUN})


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_run_blocks_run(page, tmp_path, monkeypatch):
    """A page's Python blocks in one namespace, in order; its shell blocks command by command,
    in a scratch folder where the repository's studies/ and examples/ are at hand."""
    for name in ("studies", "examples"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    for block in (b for b in RUN if b.path == page):
        if block.language == "python":
            exec(compile(block.text, block.where, "exec"), namespace)  # noqa: S102 - our own documentation
            continue
        for words in shell_commands(block.text):
            done = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{block.where}: `{shlex.join(words)}` exited {done.returncode}:\n" \
                                         f"{done.stderr[-2000:]}"
