"""Sweeps on Ray Tune: study files (``study``), the trainable and the phases that run it.

``study`` imports no Ray, so a study file is validated in a second; ``trainable`` and
``runner`` are the only modules of the project that import Ray.
"""
