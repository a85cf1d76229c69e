"""phase_times.json's spans: placed by the wall clock, measured by the monotonic one."""

from __future__ import annotations

from pathlib import Path

import pytest

from spp_sweep import trial_files


class SetClocks:
    """A stand-in for the ``time`` module whose two clocks a test sets by hand."""

    def __init__(self, wall: float, monotonic: float) -> None:
        self.wall, self.mono = wall, monotonic

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


@pytest.mark.parametrize("wall_later", [400.0, 1003.0, 90_000.0])  # set back, running true, set forward
def test_a_span_lasts_what_the_monotonic_clock_counted_whatever_the_wall_clock_did(
        wall_later: float, monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = SetClocks(wall=1000.0, monotonic=50.0)
    monkeypatch.setattr(trial_files, "time", clocks)
    started = trial_files.Instant.now()
    clocks.wall, clocks.mono = wall_later, 53.0
    assert started.span() == (1000.0, 1003.0)


def test_spans_added_to_a_phase_read_back_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = SetClocks(wall=1000.0, monotonic=50.0)
    monkeypatch.setattr(trial_files, "time", clocks)
    first = trial_files.Instant.now()
    clocks.wall, clocks.mono = 10.0, 52.5  # the wall clock set back by hours during the first span
    trial_files.add_phase_time(tmp_path, "grid", *first.span())
    second = trial_files.Instant.now()
    clocks.mono = 54.0
    trial_files.add_phase_time(tmp_path, "grid", *second.span())
    assert trial_files.read_phase_times(tmp_path) == {"grid": [[1000.0, 1002.5], [10.0, 11.5]]}
