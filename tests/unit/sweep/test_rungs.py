"""The rungs kept per configuration (spp_sweep/sweep/rungs.py) decide as Ray Tune's ASHA does."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from spp_sweep import trial_files
from spp_sweep.sweep.rungs import RungKeeper, Rungs


def ray_decisions(reports: list[tuple[str, int, float]], grace: int, max_t: int, factor: float) -> list[bool]:
    """Ray's own ASHAScheduler fed ``reports`` (trial, task, score) in order: which it stops."""
    scheduler = ASHAScheduler(time_attr="task", metric="score", mode="max", max_t=max_t, grace_period=grace,
                              reduction_factor=factor)
    trials: dict[str, SimpleNamespace] = {}
    stops = []
    for key, task, score in reports:
        if key not in trials:
            trials[key] = SimpleNamespace(trial_id=key)
            scheduler.on_trial_add(None, trials[key])
        action = scheduler.on_trial_result(None, trials[key], {"task": task, "score": score})
        stops.append(action == TrialScheduler.STOP)
    return stops


def interleaved(seed: int, n: int, max_t: int) -> list[tuple[str, int, float]]:
    """Each of n configurations' reports after tasks 1..max_t-1 (the caller interleaves them)."""
    rng = random.Random(seed)
    quality = {f"c{i}": rng.random() for i in range(n)}
    return [(key, task, quality[key] + 0.05 * rng.random() * task) for key in quality for task in range(1, max_t)]


@pytest.mark.parametrize(("grace", "max_t", "factor"), [(1, 5, 2), (1, 10, 3), (2, 9, 2), (1, 4, 4)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_rungs_stop_exactly_what_rays_asha_stops_on_the_same_reports(grace: int, max_t: int, factor: float,
                                                                          seed: int) -> None:
    planned = interleaved(seed, 12, max_t)
    rng = random.Random(100 + seed)
    by_key: dict[str, list[tuple[str, int, float]]] = {}
    for report in planned:
        by_key.setdefault(report[0], []).append(report)
    # one arrival order, the same for both: configurations advance in random turns, and one that
    # was stopped reports no more (a stopped trial, a frozen member)
    ours, order, stopped = Rungs(grace, max_t, factor), [], set()
    while any(by_key.values()):
        key = rng.choice([k for k, left in by_key.items() if left])
        report = by_key[key].pop(0)
        if key in stopped:
            by_key[key] = []
            continue
        order.append(report)
        if ours.decide(*report):
            stopped.add(key)
    assert [ours.decisions[(k, t)] for k, t, _ in order] == ray_decisions(order, grace, max_t, factor)
    assert stopped and len(stopped) < 12  # the comparison decided something both ways


def test_the_rungs_sit_where_rays_do_and_the_cutoff_is_the_percentile_by_hand() -> None:
    rungs = Rungs(1, 5, 2)  # max_t 5, rf 2: rungs after 4, 2 and 1 tasks (Ray's MAX_RUNGS = int(log2 5 + 1) = 3)
    assert [milestone for milestone, _ in rungs.rungs] == [4, 2, 1]
    assert not rungs.decide("a", 1, 0.6)  # nothing recorded: continues
    assert rungs.decide("b", 1, 0.5)  # below the median of {0.6}
    assert not rungs.decide("c", 1, 0.7)  # median of {0.6, 0.5} is 0.55
    assert rungs.cutoff({"a": 0.6, "b": 0.5, "c": 0.7}) == pytest.approx(0.6)
    assert rungs.decide("d", 1, 0.59)  # below 0.6
    assert not rungs.decide("a", 2, 0.1)  # the first at rung 2: continues, whatever its score
    assert rungs.decide("c", 3, 0.05)  # after 3 tasks it is judged at rung 2 (the highest reached) against {0.1}
    assert Rungs(1, 5, 3).rungs[0][0] == 3  # rf 3: rungs after 3 and 1 tasks


def test_a_decision_asked_again_is_the_same_and_the_record_survives_the_driver(tmp_path: Path) -> None:
    keeper = RungKeeper(1, 5, 2, str(tmp_path))
    assert keeper.decide([("a", 1, 0.9), ("b", 1, 0.1)]) == [False, True]
    # a trial restarted from a checkpoint older than its decision asks again: told the same
    assert keeper.decide([("b", 1, 0.95)]) == [True]
    saved = trial_files.read_rungs(tmp_path)
    assert saved is not None and saved["decisions"] == [["a", 1, False], ["b", 1, True]]
    again = RungKeeper(1, 5, 2, str(tmp_path))  # a resumed phase: the same record, the same next decision
    fresh = RungKeeper(1, 5, 2, None)
    fresh.decide([("a", 1, 0.9), ("b", 1, 0.1)])
    assert again.decide([("c", 1, 0.4)]) == fresh.decide([("c", 1, 0.4)]) == [True]  # below the median 0.5
    assert again.rungs.saved() == fresh.rungs.saved()
