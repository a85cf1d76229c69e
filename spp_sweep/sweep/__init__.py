"""Sweeps on Ray Tune: study files (``study``), the trainable and the phases that run it.

Ray lives in this package only, and here in eight modules: ``runner`` (the phases),
``trainable`` (one trial, stacked or not), ``recovery`` (resuming from Ray's state files),
``connection`` (reaching a cluster), ``trackers`` (the TensorBoard, MLflow and W&B callback),
``disk_full`` (stopping a phase when its storage fills), ``optuna_search`` (Optuna phases
that suggest a stack at a time) and ``rungs`` (ASHA's early stopping per configuration, as an
actor the trials ask; Ray imported inside its functions). ``trainable``, ``trackers``, ``disk_full`` and
``optuna_search`` import it at import time (Ray's workers import the first; the others define
classes Ray Tune calls); the rest inside the functions that need it. ``study``, ``stacking``,
``status``, ``provenance`` and ``lock`` import no Ray at all, so a study file is validated in
a second; ``tests/unit/test_layers.py`` keeps it so. Nothing here imports the reports
(``analysis/``): what the driver reads of a sweep's results (the trial table, each method's best
configuration) comes from ``spp_sweep.results``; the commands that run a sweep and then write a
report (``spp_sweep.cli.commands``, ``spp_sweep.recommend``) sit above both.
"""
