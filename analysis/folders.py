"""Output folders written whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from spp_sweep.files import publish


def replace_folder(out: Path, write: Callable[[Path], None]) -> None:
    """Run ``write`` into a staging folder beside ``out``, then swap it in for ``out``.

    A report that fails halfway (a bad figure, Ctrl+C) leaves the previous one in place and
    no half-written folder behind.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent if out.parent.exists() else None))
    try:
        write(staging)
        publish(staging, folder=True)  # mkdtemp made it 0700: readable by colleagues, as the umask says
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
