"""The per-configuration tracker: a stack's members are runs of their own, each logged once per
task, an ended member's repeated values not logged again (no Ray session, no tracker client)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spp_sweep.sweep.trackers import Configuration, ConfigurationTracker, Trackers, configurations, step_values


@dataclass
class FakeSink:
    label: str = "fake"
    opened: list[Configuration] = field(default_factory=list)
    logged: list[tuple[str, int, dict[str, float]]] = field(default_factory=list)
    closed: list[tuple[str, str]] = field(default_factory=list)

    def open(self, config: Configuration, sweep: str, phase: str) -> None:
        self.opened.append(config)

    def log(self, key: str, values: dict[str, float], step: int) -> None:
        self.logged.append((key, step, values))

    def close(self, key: str, status: str) -> None:
        self.closed.append((key, status))


@dataclass
class FakeTrial:
    trial_id: str
    config: dict[str, Any]


def running(task: int, acc: float) -> dict[str, Any]:
    return {"task": task, "n_tasks": 3, "status": "running", "running_acc": acc, "score": acc, "seconds": 1.0,
            "accuracy_row": [acc] * task}


def final(task: int, status: str = "finished") -> dict[str, Any]:
    return {"task": task, "n_tasks": 3, "status": status, "running_acc": 0.9, "score": 0.9, "acc": 0.9,
            "bwt": -0.05, "fwt": 0.01, "val_acc": 0.88, "accuracy_matrix": [[0.9] * 3] * task,
            "diverged_at_task": None}


STACK = {"method": "spp", "seed": 0, "params": {}, "options": {"penalty_step": "implicit"},
         "members": [{"method": "spp", "seed": s, "options": {"penalty_step": "implicit", "beta": 3},
                      "params": {"lam": lam}} for lam, s in [(1.0, 0), (4.0, 0), (4.0, 1)]]}


def tracked(sink: FakeSink) -> ConfigurationTracker:
    tracker = ConfigurationTracker(Trackers(), "sweep", "grid", "tb", "root", background=False)
    tracker._sinks = [sink]
    return tracker


def test_a_stack_is_one_run_per_member_with_its_own_values_as_parameters() -> None:
    sink = FakeSink()
    tracker = tracked(sink)
    trial = FakeTrial("abc_00001", {"trial": STACK})
    member_two_diverged = {"task": 1, "n_tasks": 3, **final(1, "diverged"), "score": -1.0}
    tracker.on_trial_result(1, [], trial, {"members": [running(1, 0.95), running(1, 0.94), running(1, 0.93)]})
    tracker.on_trial_result(2, [], trial, {"members": [running(2, 0.9), running(2, 0.8), member_two_diverged]})
    tracker.on_trial_result(3, [], trial, {"members": [final(3), final(3), member_two_diverged]})
    assert [c.params["lam"] for c in sink.opened] == [1.0, 4.0, 4.0]
    assert [c.params["seed"] for c in sink.opened] == [0, 0, 1]
    assert sink.opened[0].params == {"method": "spp", "seed": 0, "penalty_step": "implicit", "lam": 1.0,
                                     "option.penalty_step": "implicit", "option.beta": 3}
    assert sink.opened[2].name == "spp implicit lam=4 seed=1"
    assert len({c.key for c in sink.opened}) == 3
    steps = {c.key: [step for key, step, _ in sink.logged if key == c.key] for c in sink.opened}
    # the member that diverged in task 2 ends at task 1 (its last finished one) and repeats its final
    # values at task 3: they are logged once, at task 1, without the running values logged there before
    assert list(steps.values()) == [[1, 2, 3], [1, 2, 3], [1, 1]]
    ended = [values for key, _, values in sink.logged if key == sink.opened[2].key][1]
    assert ended["score"] == -1.0 and ended["bwt"] == -0.05 and "running_acc" not in ended
    assert sorted(status for _, status in sink.closed) == ["diverged", "finished", "finished"]
    last = [values for key, step, values in sink.logged if key == sink.opened[0].key and step == 3][0]
    assert last["acc"] == 0.9 and last["bwt"] == -0.05 and last["val_acc"] == 0.88
    assert "task" not in last and "accuracy_matrix" not in last and "diverged_at_task" not in last
    tracker.on_trial_complete(3, [], trial)
    assert len(sink.closed) == 3  # nothing closed twice


def test_an_errored_trial_closes_its_open_runs_as_failed_and_a_replayed_end_is_logged_once() -> None:
    sink = FakeSink()
    tracker = tracked(sink)
    done = FakeTrial("abc_00001", {"trial": {"method": "ewc", "seed": 1, "params": {"lam": 10.0}}})
    for _ in range(2):  # none of its reports reached this tracker before the restart; replayed twice
        tracker.on_trial_result(1, [], done, {**final(3), "replayed": True})
    # tasks 1 and 2 from the final report's matrix rows, then the final values, once
    assert [step for _, step, _ in sink.logged] == [1, 2, 3] and sink.closed == [("grid/abc_00001", "finished")]
    single = FakeTrial("abc_00002", {"trial": {"method": "ewc", "seed": 2, "params": {"lam": 100.0}}})
    tracker.on_trial_result(1, [], single, running(1, 0.9))
    tracker.on_trial_error(1, [], single)
    assert sink.closed[1:] == [("grid/abc_00002", "error")]
    assert sink.opened[1].params == {"method": "ewc", "seed": 2, "penalty_step": "none", "lam": 100.0}


def test_a_failing_tracker_is_reported_once_and_left_off(capsys: Any) -> None:
    class Broken(FakeSink):
        def log(self, key: str, values: dict[str, float], step: int) -> None:
            raise ConnectionError("server went away")

    good, broken = FakeSink(), Broken(label="MLflow")
    tracker = tracked(good)
    tracker._sinks = [broken, good]
    trial = FakeTrial("abc_00003", {"trial": {"method": "mas", "seed": 0, "params": {}}})
    tracker.on_trial_result(1, [], trial, running(1, 0.9))
    tracker.on_trial_result(2, [], trial, running(2, 0.8))
    err = capsys.readouterr().err
    assert err.count("MLflow logging failed (ConnectionError: server went away)") == 1
    assert [step for _, step, _ in good.logged] == [1, 2]


def test_the_tracker_pickles_without_its_clients_and_a_restored_one_logs_no_step_twice() -> None:
    import pickle

    sink = FakeSink()
    tracker = tracked(sink)
    trial = FakeTrial("abc_00004", {"trial": {"method": "si", "seed": 0, "params": {"lam": 1.0}}})
    tracker.on_trial_result(1, [], trial, running(1, 0.9))
    tracker.on_trial_result(2, [], trial, running(2, 0.8))
    copy = pickle.loads(pickle.dumps(tracker))
    assert copy._sinks is None and copy._open == set() and copy.sweep == "sweep"
    restored, again = tracked(FakeSink()), FakeSink()
    assert copy.background is False
    restored.set_state(tracker.get_state())  # what Ray Tune does on --resume
    restored._sinks = [again]
    for task in (1, 2):  # the trial retrained its second task after the restart: not logged again
        restored.on_trial_result(task, [], trial, running(task, 0.7))
    restored.on_trial_result(3, [], trial, final(3))
    assert [c.key for c in again.opened] == ["grid/abc_00004"]  # the same run, continued
    assert [step for _, step, _ in again.logged] == [3] and again.closed == [("grid/abc_00004", "finished")]


def test_step_values_keeps_numbers_and_adds_the_running_validation_accuracy() -> None:
    values = step_values({"task": 2, "running_acc": 0.5, "validation_row": [0.8, 0.6, 0.1], "status": "running",
                          "replayed": False, "acc": float("nan"), "members": []})
    assert values == {"running_acc": 0.5, "val_running_acc": 0.7}
    pairs = list(configurations("final", "t1", {"method": "finetune", "seed": 3, "params": {}}, {"task": 1}))
    assert pairs[0][0].key == "final/t1" and pairs[0][0].name == "finetune seed=3"


def test_a_task_whose_report_never_reached_the_driver_is_logged_from_the_rows_the_next_report_carries() -> None:
    sink = FakeSink()
    tracker = tracked(sink)
    trial = FakeTrial("abc_00005", {"trial": {"method": "spp", "seed": 0, "params": {"lam": 1.0}}})
    tracker.on_trial_result(1, [], trial, running(1, 1.0))
    # the trial finished task 2 and checkpointed it, the driver stopped before its report arrived; the
    # restarted trial's first report (task 3) carries the rows so far
    rows = [[1.0, 0.1, 0.2], [0.8, 0.6, 0.3], [0.7, 0.5, 0.9]]
    tracker.on_trial_result(2, [], trial, {**running(3, 0.7), "accuracy_matrix": rows,
                                           "validation_matrix": [[0.9, 0.0, 0.0], [0.5, 0.7, 0.0], rows[2]]})
    assert [step for _, step, _ in sink.logged] == [1, 2, 3]
    assert sink.logged[1][2] == {"running_acc": 0.7, "val_running_acc": 0.6}  # mean of row 2's first two tasks


def test_in_the_background_the_calls_run_in_order_and_the_phase_end_waits_for_them() -> None:
    sink = FakeSink()
    tracker = ConfigurationTracker(Trackers(), "sweep", "grid", "tb", "root")  # background, as in a sweep
    tracker._sinks = [sink]
    trial = FakeTrial("abc_00009", {"trial": {"method": "spp", "seed": 0, "params": {"lam": 2.0}}})
    for task in (1, 2):
        tracker.on_trial_result(task, [], trial, running(task, 0.5))
    tracker.on_trial_result(3, [], trial, final(3))
    tracker.on_experiment_end([])
    assert [step for _, step, _ in sink.logged] == [1, 2, 3] and sink.closed == [("grid/abc_00009", "finished")]


def test_quiet_keeps_wandb_silent_and_without_it_wandb_speaks(tmp_path, monkeypatch, capfd) -> None:
    """--quiet reaches the W&B client (its banner and per-run summary are most of what a quiet
    sweep with --wandb printed); without it, the same run prints, so the quiet case proves something."""
    from spp_sweep.sweep.trackers import WandbSink

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    printed = {}
    for quiet in (True, False):
        sink = WandbSink("spp-sweep-test", seed=f"s{quiet}", quiet=quiet)
        config = Configuration(key=f"grid/t{quiet}", name="spp lam=4 seed=0", method="spp", params={"lam": 4.0})
        sink.open(config, "sweep", "grid")
        sink.log(config.key, {"running_acc": 0.5}, step=1)
        sink.close(config.key, "finished")
        out, err = capfd.readouterr()
        printed[quiet] = out + err
    assert "wandb" not in printed[True].lower() and "wandb" in printed[False].lower()
