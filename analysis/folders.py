"""Output folders written whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from spp_sweep.atomic_files import OUTPUT_MARK, check_output_folder, publish


def replace_folder(out: Path, write: Callable[[Path], None], keep: tuple[Path, ...] = ()) -> None:
    """Run ``write`` into a staging folder beside ``out``, then swap it in for ``out``.

    A report that fails halfway (a bad figure, Ctrl+C) leaves the previous one in place and
    no half-written folder behind. Only a folder this tool wrote (marked) or an empty one is
    replaced (``check_output_folder``; ``keep``: folders it must not hold), and the new one is
    marked.
    """
    check_output_folder(out, "output folder", keep)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    old = out.parent / f"{staging.name}-old"
    try:
        write(staging)
        (staging / OUTPUT_MARK).write_text("written by spp-sweep; replaced whole when it writes this output again\n")
        publish(staging, folder=True)  # mkdtemp made it 0700: readable by colleagues, as the umask says
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not out.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
