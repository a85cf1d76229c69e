"""The Optuna phase: how many configurations a method suggests at once, the searcher that asks
each method's study in turn for a stack and tells each member's score back, and resuming from a
snapshot older than the journal (no Ray session)."""

from __future__ import annotations

import optuna
import pytest

from spp_sweep.sweep.optuna_search import BatchedOptunaSearch, method_study, tell_ended
from spp_sweep.sweep.recovery import EndedConfiguration, done_trials
from spp_sweep.sweep.stack_plan import optuna_batch
from spp_sweep.sweep.study import parse_study

SPACE = {"lam": {"loguniform": [0.1, 100.0]}, "lr": {"loguniform": [0.001, 0.1]}}


def batch(slots: int = 2, left: int = 12, sharing: int = 1, **study: object) -> tuple[int, str]:
    values = {"benchmark": "split_digits", "methods": {"spp": {"space": SPACE}},
              "search": {"sampler": "tpe", "num_samples": left}, **study}
    parsed = parse_study(values)
    return optuna_batch(parsed, parsed.methods[0], parsed.selection_part(), slots, left, sharing)


def test_auto_batches_so_that_each_slot_runs_at_least_two_batches() -> None:
    assert batch(slots=2, left=12)[0] == 3  # 12 configurations, 2 slots, 2 batches each
    assert batch(slots=1, left=12)[0] == 6
    assert batch(slots=8, left=12)[0] == 1  # enough slots for one configuration per trial
    size, why = batch(slots=2, left=12)
    assert "12 configurations, 3 suggested at a time" in why and "constant-liar" in why


def test_methods_sharing_a_phase_share_its_slots_and_each_still_runs_two_batches() -> None:
    """recommend's six methods on 2 slots, 8 configurations each: 4 at a time (12 trials, 6 per
    slot, 2 batches per method), not 2 (24 trials); never one batch for everything."""
    size, why = batch(slots=2, left=8, sharing=6)
    assert size == 4 and "shared by 6 methods" in why
    assert batch(slots=2, left=8, sharing=2)[0] == 4  # 2 methods x 2 batches fill 2 slots twice
    assert batch(slots=16, left=12, sharing=6)[0] == 2  # a cluster: 6 batches each keep 16 slots busy
    assert batch(slots=2, left=12, sharing=1)[0] == 3  # one method: as above
    size, why = batch(slots=2, left=24, sharing=6)  # 2 batches each would be 12: more than measured
    assert size == 6 and "at most 6 at a time" in why
    assert batch(slots=1, left=48)[0] == 6 and batch(slots=1, left=48, stack=12)[0] == 12  # stack: N is asked as given


def test_a_number_off_and_unstackable_values_decide_the_batch_and_an_asha_scheduler_does_not() -> None:
    assert batch(stack=4)[0] == 4
    assert batch(stack="off") == (1, "")
    asha = {"type": "asha", "grace_period": 1, "reduction_factor": 2}  # it stops members, not trials (rungs.py)
    assert batch(scheduler=asha)[0] == 3 and batch(scheduler=asha, stack=4)[0] == 4
    size, why = batch(methods={"spp": {"space": {**SPACE, "batch_size": [32, 64]}}})
    assert size == 1 and "batch_size is searched" in why


LOG_SPACE = {f"trial/params/{k}": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True) for k in ("lam", "lr")}
BASE = {"method": "spp", "seed": 0, "options": {}, "params": {}}


def searcher(budget: int = 5, batch_size: int = 2, told: bool = True, **storage: object) -> BatchedOptunaSearch:
    """One method's search; ``told``: one configuration ended already (a phase continued anew)."""
    done = [EndedConfiguration({"lam": 0.5, "lr": 0.01}, 0.7, None, "spp")] if told else []
    sampler = optuna.samplers.TPESampler(seed=0, constant_liar=True)
    return BatchedOptunaSearch([method_study(LOG_SPACE, sampler, BASE, batch_size, budget, done=done, **storage)])


def test_the_searcher_asks_a_stack_tells_each_member_and_stops_at_the_budget(tmp_path) -> None:
    search = searcher(budget=4)  # one configuration told already (a phase continued): 3 left
    first = search.suggest("t1")["trial"]
    assert len(first["members"]) == 2 and {m["seed"] for m in first["members"]} == {0}
    assert all(set(m["params"]) == {"lam", "lr"} for m in first["members"])
    second = search.suggest("t2")["trial"]  # the budget's last configuration: one, not a stack
    assert "members" not in second and set(second["params"]) == {"lam", "lr"}
    assert search.suggest("t3") == "FINISHED"
    search.on_trial_complete("t1", {"members": [{"score": 0.9}, {"score": -1.0}]})
    search.on_trial_complete("t2", None, error=True)
    states = [(t.state.name, t.value) for t in search._methods[0].study.trials]
    assert states == [("COMPLETE", 0.7), ("COMPLETE", 0.9), ("COMPLETE", -1.0), ("FAIL", None)]
    path = tmp_path / "searcher.pkl"
    search.save(str(path))
    restored = searcher(budget=4)
    restored.restore(str(path))
    assert len(restored._methods[0].study.trials) == 4 and restored.suggest("t4") == "FINISHED"


@pytest.mark.parametrize("told", [0, 1])
def test_suggestions_within_a_batch_differ(told: int) -> None:
    search = searcher(budget=40, batch_size=8)
    for k in range(told):
        trial = search.suggest(f"warm{k}")
        search.on_trial_complete(f"warm{k}", {"members": [{"score": 0.5}] * len(trial["trial"]["members"])})
    members = search.suggest("batch")["trial"]["members"]
    assert len({round(m["params"]["lam"], 9) for m in members}) == 8


def journal(path) -> dict[str, object]:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return {"storage": JournalStorage(JournalFileBackend(str(path / "optuna.journal"))), "study_name": "phase"}


def test_methods_are_asked_in_turn_each_with_its_own_study_budget_and_config() -> None:
    """One experiment for every method searched by Optuna: trials alternate between the methods,
    each method's suggestions fill its own spec and carry its own extra config (its rung keeper),
    and a score goes to the study of the method whose trial it was."""
    def study(method: str, budget: int, batch_size: int):
        space = {"trial/params/lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)}
        return method_study(space, optuna.samplers.RandomSampler(seed=0), {**BASE, "method": method}, batch_size,
                            budget, done=[], study_name=method, extra={"rungs": f"keeper-{method}"})

    search = BatchedOptunaSearch([study("spp", 3, 2), study("finetune", 1, 1)])
    suggested = [search.suggest(f"t{k}") for k in range(4)]
    assert suggested[3] == "FINISHED"
    first, second, third = suggested[:3]
    assert [m["method"] for m in first["trial"]["members"]] == ["spp", "spp"] and first["rungs"] == "keeper-spp"
    assert second["trial"]["method"] == "finetune" and second["rungs"] == "keeper-finetune"
    assert third["trial"]["method"] == "spp" and "members" not in third["trial"]  # the budget's last one
    search.on_trial_complete("t1", {"score": 0.6, "status": "finished"})
    search.on_trial_complete("t0", {"members": [{"score": 0.9}, {"score": 0.8}]})
    spp, finetune = (m.study for m in search._methods)
    assert [t.value for t in spp.trials] == [0.9, 0.8, None] and [t.value for t in finetune.trials] == [0.6]


def test_a_snapshot_older_than_the_journal_replays_a_finished_trial_without_telling_it_twice(tmp_path) -> None:
    """A driver killed after Optuna's journal recorded a trial's end but before Ray Tune saved
    the searcher: the restored searcher holds the trial as running, and the restarted trial
    reports its last task again (seen in CI: UpdateFinishedTrialError ended the resumed sweep)."""
    search = searcher(budget=3, batch_size=1, **journal(tmp_path))
    search.suggest("t1")
    search.on_trial_result("t1", {"score": 0.4, "task": 1, "status": "running"})
    snapshot = tmp_path / "searcher.pkl"
    search.save(str(snapshot))  # Ray Tune's last snapshot before the kill
    search.on_trial_result("t1", {"score": 0.6, "task": 2, "status": "running"})
    search.on_trial_complete("t1", {"score": 0.8, "task": 3, "status": "finished"})

    restored = searcher(budget=3, batch_size=1, told=False, **journal(tmp_path))  # replaced by the snapshot
    restored.restore(str(snapshot))
    restored.on_trial_result("t1", {"score": 0.6, "task": 2, "status": "running"})  # the replayed reports
    restored.on_trial_complete("t1", {"score": 0.8, "task": 3, "status": "finished"})
    trials = optuna.load_study(study_name="phase", storage=journal(tmp_path)["storage"]).trials
    assert [(t.state.name, t.value, t.intermediate_values) for t in trials] == \
        [("COMPLETE", 0.7, {}), ("COMPLETE", 0.8, {1: 0.4, 2: 0.6})]
    restored.suggest("t2")  # the search goes on
    restored.on_trial_complete("t2", {"score": 0.5, "task": 3, "status": "finished"})
    later = optuna.load_study(study_name="phase", storage=journal(tmp_path)["storage"]).trials
    assert [t.value for t in later] == [0.7, 0.8, 0.5]


def test_a_batched_trial_told_before_the_snapshot_caught_up_is_not_told_again(tmp_path) -> None:
    search = searcher(budget=4, batch_size=2, **journal(tmp_path))
    search.suggest("t1")
    snapshot = tmp_path / "searcher.pkl"
    search.save(str(snapshot))
    search.on_trial_complete("t1", {"members": [{"score": 0.9}, {"score": 0.3}]})
    search.restore(str(snapshot))  # t1 pending again
    search.on_trial_complete("t1", {"members": [{"score": 0.9}, {"score": 0.3}]})
    assert [t.value for t in search._methods[0].study.trials] == [0.7, 0.9, 0.3]


def test_a_member_the_asha_scheduler_stopped_is_told_as_pruned_after_its_tasks(tmp_path) -> None:
    """Its score covers fewer tasks than a finished one's, so it is not told as a finished trial's
    value (Ray's OptunaSearch would): pruned, its score the intermediate value at its last task."""
    search = searcher(budget=4)
    search.suggest("t1")
    search.on_trial_complete("t1", {"members": [{"score": 0.47, "status": "finished", "task": 5},
                                                {"score": 0.51, "status": "stopped", "task": 1}]})
    told = [(t.state.name, t.value, t.intermediate_values) for t in search._methods[0].study.trials[1:]]
    assert told == [("COMPLETE", 0.47, {}), ("PRUNED", 0.51, {1: 0.51})]  # Optuna gives a pruned trial its last value
    alone = searcher(budget=4, batch_size=1)  # a configuration trained alone: its own report, not a member's
    alone.suggest("t1")
    alone.on_trial_result("t1", {"score": 0.52, "task": 1, "status": "running"})
    alone.on_trial_complete("t1", {"score": 0.52, "status": "stopped", "task": 1})
    trials = alone._methods[0].study.trials[1:]
    assert [(t.state.name, t.value, t.intermediate_values) for t in trials] == [("PRUNED", 0.52, {1: 0.52})]


def test_a_phase_continued_anew_tells_what_ended_as_it_was_told_live(tmp_path) -> None:
    """After an unreadable state is moved aside, the configurations that ended are read back from
    their folders: a finished one COMPLETE with its score, one ASHA stopped after 2 of 5 tasks
    PRUNED with that score at task 2 (not COMPLETE, as Ray's evaluated_rewards would tell it)."""
    import json

    for name, values in (("a", {"score": 0.8, "status": "finished", "task": 5, "acc": 0.8}),
                         ("b", {"score": 0.6, "status": "stopped", "task": 2, "acc": 0.6})):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps({"trial": {"method": "spp", "params": {"lam": 1.0 if name == "a"
                                                                                              else 2.0}}}))
        (folder / "result.json").write_text(json.dumps({**values, "n_tasks": 5, "training_iteration": 1}) + "\n")
    done = done_trials(str(tmp_path))
    assert done == [EndedConfiguration({"lam": 1.0}, 0.8, None, "spp"), EndedConfiguration({"lam": 2.0}, 0.6, 2, "spp")]
    study = optuna.create_study(direction="maximize")
    tell_ended(study, {"trial/params/lam": optuna.distributions.FloatDistribution(0.1, 10.0, log=True)}, done)
    told = [(t.state.name, t.value, t.intermediate_values) for t in study.trials]
    assert told == [("COMPLETE", 0.8, {}), ("PRUNED", 0.6, {2: 0.6})]
