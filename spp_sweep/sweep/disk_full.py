"""Stop a sweep at the first trial that fails because its storage is full.

Ray Tune would retry every such trial ``max_failures`` times and start every pending one, each
failing the same way (the probe: six minutes of tracebacks on a 20 MB disk, every trial tried
three times), and its own state files are cut short when the driver then writes them. One
object is both the callback that sees a trial fail (or be retried) and the stopper that ends
the experiment, so the phase stops within a step; the runner then says it in one line
(``DiskFull``, exit 2) and ``--resume`` reruns the trials the disk stopped once there is
space (``recovery.failed_for_want_of_space``).
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from ray.tune import Callback, Stopper

from .. import trial_files
from .recovery import DISK_FULL_MARKS


class DiskFull(OSError):
    """The storage filled during a sweep (an OSError with ENOSPC, as the CLI reports it)."""

    def __init__(self, where: str) -> None:
        super().__init__(errno.ENOSPC, "No space left on device", where)


class DiskFullWatch(Callback, Stopper):
    """Sees each failing trial's error; once one says the disk is full, stops the experiment."""

    def __init__(self) -> None:
        self.full_at: str | None = None  # the trial folder where the disk was found full

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:  # Stopper: no trial stops on its own
        return False

    def stop_all(self) -> bool:
        return self.full_at is not None

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._look(trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._look(trial)

    def _look(self, trial: Any) -> None:
        """The error Ray wrote for this trial, or the fact it could not write one, says the disk is full."""
        folder = Path(trial.local_path) if trial.local_path else None
        if folder is None:
            return
        try:
            text = (folder / trial_files.ERROR).read_text(errors="replace")
        except OSError:
            text = ""
        if any(mark in text for mark in DISK_FULL_MARKS) or (folder.exists() and not text.strip()):
            self.full_at = str(folder)
