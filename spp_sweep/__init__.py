"""spp-sweep: Soft Parameter Pruning (SPP) and its continual-learning baselines, with sweeps.

The engine (:mod:`spp_sweep.engine`) runs one method on one task sequence without Ray;
:mod:`spp_sweep.methods`, :mod:`spp_sweep.benchmarks` and :mod:`spp_sweep.models` are registries.
"""

__version__ = "0.1.0"
