"""Finished (or running) sweeps -> pandas tables, seaborn figures and a Markdown report.

Reads only what a sweep writes (Ray Tune's per-trial files and the checkpointed
``result.json``); it never imports the engine.
"""
