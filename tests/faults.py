"""The tests' trainable: the sweep's own (``train_continual``) with faults injected after a task,
as the config's ``faults`` says (``run_sweep(..., extra_config={"faults": {...}})``):

- ``raise_at_task``: raise every time, so the trial ends errored;
- ``kill_at_task``: SIGKILL the worker process once (a ``marker`` file remembers it), as a
  crashed node would;
- ``method``: only trials of this method (default: every trial).

Ray pickles this module by value (``cloudpickle.register_pickle_by_value``): its workers need not
import the tests package.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from pathlib import Path
from typing import Any

import cloudpickle

from spp_sweep.sweep.runner import SweepOptions
from spp_sweep.sweep.trainable import train_continual


def faulty_trainable(config: dict[str, Any]) -> None:
    faults = config["faults"]

    def inject(task: int, run: Any) -> None:
        if faults.get("method", run.config.method) != run.config.method:
            return
        if task == faults.get("raise_at_task"):
            raise RuntimeError(f"injected failure at task {task + 1}")
        if task == faults.get("kill_at_task") and not Path(faults["marker"]).exists():
            Path(faults["marker"]).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    train_continual(config, task_ended=inject)


def with_faults(options: SweepOptions) -> SweepOptions:
    """``options`` whose trials run :func:`faulty_trainable`."""
    return dataclasses.replace(options, trainable=faulty_trainable)


cloudpickle.register_pickle_by_value(sys.modules[__name__])
