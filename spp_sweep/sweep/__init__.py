"""Sweeps on Ray Tune: study files (``study``), the trainable and the phases that run it.

Ray lives in this package only, and here in five modules: ``runner`` (the phases), ``trainable``
(one trial, stacked or not), ``recovery`` (resuming from Ray's state files), ``connection``
(reaching a cluster) and ``trackers`` (TensorBoard, MLflow and W&B callbacks). ``trainable``
imports it at import time (Ray's workers import that module); the others inside the functions
that need it. ``study``, ``stacking``, ``status``, ``recommend`` and ``provenance`` import no Ray
at all, so a study file is validated in a second; ``tests/unit/test_layers.py`` keeps it so.
"""
