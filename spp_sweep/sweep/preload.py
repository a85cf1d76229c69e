"""Import, while Ray starts, the modules a sweep's driver imports after it anyway.

``ray.init`` of a new local instance takes 2-3 s on the project's 2-core machine, most of it
sleeping between polls for its node (once a second), while the imports the driver does after it
cost another 1.6 s: Ray Tune counts the callbacks it is given for its telemetry by importing
Ray's MLflow, W&B, Comet and Aim integrations (with mlflow and wandb themselves where they are
installed; every phase passes a callback, disk_full.py), its TensorBoard logger imports
tensorboardX, an Optuna phase imports Optuna, and the reports import SciPy, matplotlib and
seaborn. Imported in a thread beside ``ray.init`` (:func:`importing_beside`) they cost nothing
there (``bench/preload_overlap.py``: 0.9 s of the 1.6 s saved; speed.md). The thread is joined before
the driver goes on, so after ``connect`` no import runs in two threads at once, and a module that
fails to import here is simply imported again where the driver needs it, failing as it would
have.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Iterable, Iterator

# What Ray Tune imports in the driver at a Tuner's first fit (ray.air._internal.usage.tag_callbacks,
# tune.logger's TensorBoard callback)
RAY_TUNE_LATER = ("ray.air.integrations.mlflow", "ray.air.integrations.wandb", "ray.air.integrations.comet",
                  "ray.tune.logger.aim", "tensorboardX")
OPTUNA_LATER = ("optuna",)  # an Optuna phase's searcher (runner._optuna_searcher)
FINAL_LATER = ("analysis.load", "analysis.tables")  # the final phase's points (runner._final_points)


@contextlib.contextmanager
def importing_beside(modules: Iterable[str]) -> Iterator[None]:
    """Import ``modules`` in a thread while the body runs; the thread has ended when it returns."""
    names = tuple(modules)
    if not names:
        yield
        return
    thread = threading.Thread(target=_import_all, args=(names,), name="spp-sweep-preload", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def _import_all(names: tuple[str, ...]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - not installed, or broken: the driver's own import says so later
            continue
