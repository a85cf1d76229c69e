"""preload.py: the modules a driver imports after Ray's start are imported in a thread beside it,
that thread has ended when the start returns, and a module that fails there fails again, as it
would have, where the driver imports it."""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

import pytest

from spp_sweep.sweep import preload
from spp_sweep.sweep.runner import SweepOptions, _imported_later
from spp_sweep.sweep.study import parse_study


@pytest.fixture
def modules(tmp_path: Path, monkeypatch):
    """Two importable modules that record the thread importing them, and one that raises."""
    (tmp_path / "preload_signal.py").write_text("import threading\nSTARTED = threading.Event()\n")
    (tmp_path / "preload_fine.py").write_text("import threading, time, preload_signal\n"
                                               "preload_signal.STARTED.set()\ntime.sleep(0.2)\n"
                                               "THREAD = threading.current_thread().name\n")
    (tmp_path / "preload_also.py").write_text("import threading\nTHREAD = threading.current_thread().name\n")
    (tmp_path / "preload_broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("preload_signal", "preload_fine", "preload_also", "preload_broken"):
        sys.modules.pop(name, None)


def test_the_modules_are_imported_beside_the_body_and_done_when_it_returns(modules) -> None:
    import preload_signal

    with preload.importing_beside(["preload_broken", "preload_fine", "preload_also"]):
        # the body (ray.init) runs while the thread imports: the import starts before the body
        # ends (imported after it, the event would never be set while the body waits)
        assert preload_signal.STARTED.wait(timeout=30)
        assert threading.current_thread() is threading.main_thread()
    assert sys.modules["preload_fine"].THREAD == sys.modules["preload_also"].THREAD == "spp-sweep-preload"
    assert not any(t.name == "spp-sweep-preload" for t in threading.enumerate())  # joined
    assert "preload_broken" not in sys.modules
    with pytest.raises(RuntimeError, match="broken on purpose"):  # where the driver imports it, as before
        importlib.import_module("preload_broken")


def test_nothing_to_import_starts_no_thread() -> None:
    before = threading.active_count()
    with preload.importing_beside([]):
        assert threading.active_count() == before


def test_a_sweep_preloads_what_its_phases_and_its_caller_import_later() -> None:
    base = {"name": "s", "benchmark": "split_digits", "seeds": 1}
    grid = parse_study({**base, "methods": {"finetune": {}}})
    assert _imported_later(grid, SweepOptions()) == list(preload.RAY_TUNE_LATER)
    searched = parse_study({**base, "methods": {"spp": {"space": {"lr": {"loguniform": [0.01, 0.1]}}}},
                            "search": {"sampler": "tpe", "num_samples": 2}, "final": {"seeds": 2}})
    later = _imported_later(searched, SweepOptions(preload=("analysis.report",)))
    assert later == [*preload.RAY_TUNE_LATER, *preload.OPTUNA_LATER, *preload.FINAL_LATER, "analysis.report"]
    for name in later:  # every one a real module (a typo would only cost the time it was meant to save)
        assert importlib.util.find_spec(name) is not None, name
